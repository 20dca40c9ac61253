"""The flow the `requests` deployment runs: a data scientist's request, decided on the server.

The deployment takes the request itself (its fields, as a plain mapping), never a job spec.
The worker checks it against the deployment's own policy (`jobs.request.deployment_policy`:
the file that `SYNTH_REQUEST_POLICY` in the deployment's job variables names), builds the job
spec itself, and runs it as `synth-job` runs a job (`flows.jobs.run_in_root`). A refused
request ends the flow run Failed, in a state named `RequestRefused` whose message is one line
naming the field, before anything is written under any output root.

The deployment names it by module path (`flows.synth_request:synth_request`): a file path
entrypoint puts the script's folder first on `sys.path`, where `flows/jobs.py` would shadow the
`jobs` package (and a `flows/requests.py` the `requests` package).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.jobs import run_in_root
from jobs.guard import run_step
from jobs.request import (
    DEPLOYMENT_POLICY,
    POLICY_ENV,
    RequestPolicy,
    deployment_policy,
    request_from_parameters,
)
from synth.config import JobSpec
from synth.errors import ConfigError, SynthError

REQUEST_REFUSED = "RequestRefused"


def request_run_name() -> str:
    """`<request name>-<UTC time>`, like `synth-job`'s runs; `request-...` for a bad request."""
    try:
        job = request_from_parameters(flow_run.parameters.get("request")).job_name()
    except SynthError:
        job = "request"
    return f"{job}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


@flow(name="synth-request", flow_run_name=request_run_name, log_prints=False)
def synth_request(request: dict[str, Any], force: bool = False) -> dict[str, Any] | State:
    """Check a request against this deployment's policy, build its job spec here, and run it
    into `<output root>/runs/<run id>` (or reuse the last good export, as `synth-job` does)."""
    try:
        spec, output_root = run_step("request check", _decide, request)
    except SynthError as err:
        message = f"request refused: {err}"
        get_run_logger().error(message)
        return Failed(name=REQUEST_REFUSED, message=message)
    return run_in_root(spec, str(output_root), force, progress=False)


def _decide(request: dict[str, Any]) -> tuple[JobSpec, Path]:
    """The job spec and output root this deployment's policy makes of `request`."""
    policy = deployment_policy()
    req = request_from_parameters(request)
    return policy.job_spec(req), policy.output_root(req)


def deployment_policy_for(name: str) -> RequestPolicy | None:
    """The policy the deployment `name` (`flow/deployment`) applies, when its file can be read
    from here: the command line's pre-check. None when it cannot (another machine)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise ConfigError(f"no deployment named {name!r} on the Prefect server") from None
    env = (deployment.job_variables or {}).get("env") or {}
    path = Path(env.get(POLICY_ENV) or DEPLOYMENT_POLICY)
    workdir = _working_directory(deployment)
    if workdir is None:
        return None
    path = workdir / path
    return RequestPolicy.load(path, workdir) if path.is_file() else None


def _working_directory(deployment: Any) -> Path | None:
    """Where the deployment's flow runs start: its `set_working_directory` pull step."""
    for step in deployment.pull_steps or []:
        for key, args in step.items():
            if key.endswith("set_working_directory") and args.get("directory"):
                return Path(args["directory"])
    return Path(deployment.path) if deployment.path else None
