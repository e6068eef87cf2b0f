"""``eda_report``: the EDA notebook kept in the repo (``fraud_platform/notebooks/eda.ipynb``),
executed over the sandbox with papermill; the executed notebook, its HTML rendering and the key
figures are attached to the materialisation. The logic lives in the notebook and
``fraud_platform.infra.notebooks``; this wraps it."""


import dagster as dg

from fraud_platform.defs.features.assets import read_matrix, read_sandbox
from fraud_platform.domain.catalogue import TRANSACTION_FEATURES
from fraud_platform.defs.owners import ML_ENGINEERING
from fraud_platform.defs.resources import LakeResource
from fraud_platform.infra.notebooks import figures_markdown, run_notebook
from fraud_platform.settings import platform_home

# Titles of the notebook's figures, in order (the notebook has one figure per section).
FIGURE_TITLES = ["Volume and fraud rate per day", "Class imbalance", "Amounts by class",
                 "Per-terminal and per-customer activity", "Label delay of frauds", "Feature correlations"]


class EdaConfig(dg.Config):
    max_rows: int = 500_000  # rows sampled for per-row plots; daily aggregates use every row


@dg.asset(
    group_name="eda", owners=[ML_ENGINEERING], kinds={"jupyter", "pandas"},
    deps=[dg.AssetKey("sandbox_transactions"), dg.AssetKey("transaction_features")],
    description="EDA notebook over the sandbox (simulated or imported history): volume and fraud rate over "
                "time, amounts by class, per-terminal/customer activity, label delay, class imbalance, "
                "feature correlations. Executed notebook + HTML + key figures attached.",
)
def eda_report(context: dg.AssetExecutionContext, config: EdaConfig, lake: LakeResource) -> dg.MaterializeResult:
    store = lake.store()
    sandbox, days, _excluded = read_sandbox(store)
    home = platform_home()
    output_dir = home / "reports" / "eda" / context.run.run_id
    output_dir.mkdir(parents=True, exist_ok=True)
    sandbox_path = output_dir / "sandbox.parquet"
    sandbox.to_parquet(sandbox_path, index=False)
    features_path = ""
    if store.parquet_keys(TRANSACTION_FEATURES):
        features_path = str(output_dir / "features.parquet")
        read_matrix(store).to_parquet(features_path, index=False)
    executed = run_notebook("eda", output_dir, {"sandbox_path": str(sandbox_path), "features_path": features_path,
                                                "max_rows": config.max_rows}, home)
    sandbox_path.unlink()  # inputs were copies; the report keeps only the notebook and HTML
    if features_path:
        (output_dir / "features.parquet").unlink()
    context.log.info(f"EDA notebook executed in {executed.seconds:.1f}s: {executed.html}")
    return dg.MaterializeResult(metadata={
        "notebook": dg.MetadataValue.notebook(str(executed.notebook)),
        "html": dg.MetadataValue.path(str(executed.html)),
        "figures": dg.MetadataValue.md(figures_markdown(executed.figures, FIGURE_TITLES[:len(executed.figures)])),
        "rows": len(sandbox),
        "days": len(days),
        "fraud_rate": float(sandbox["is_fraud"].mean()),
        "execution_seconds": float(executed.seconds),
    })
