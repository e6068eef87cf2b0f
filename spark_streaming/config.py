"""Typed configuration of the streaming scorer and feature pipeline.

It lives in the one settings module (``fraud_platform.settings.StreamingSettings``: fields, env vars,
precedence flags > ``FRAUD_STREAM_*`` env > ``FRAUD_STREAM_CONFIG_FILE`` > defaults); these are the
names the streaming jobs use for it.
"""

from __future__ import annotations

from fraud_platform.settings import STREAM_ENV_VARS as ENV_VARS
from fraud_platform.settings import ConfigError
from fraud_platform.settings import StreamingSettings as StreamConfig

__all__ = ["ENV_VARS", "ConfigError", "StreamConfig"]
