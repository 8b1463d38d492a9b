"""``agentrace worker``: serve a choreography's agents as a process of their own, on Redis Streams.

``agentrace worker MODULE:CHOREOGRAPHY.AGENT --bus redis://HOST:PORT`` consumes the
agent's topics for every run until SIGTERM or Ctrl-C (deliveries under way finish,
up to ``--grace`` seconds). With ``--start`` the process starts one run instead,
waits until the workers are done, prints the run id and its status, and exits 0 when
the run ended as expected. Spans go to an OTLP/HTTP receiver (``--otlp``, e.g. one
``agentrace serve``), where the processes' spans make one trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

import click
import orjson

from .._cli_base import cli, errors_to_exit, fail


@cli.command()
@click.argument("target", metavar="MODULE:AGENT")
@click.option("--bus", "url", required=True, metavar="redis://HOST:PORT", help="The Redis to use.")
@click.option(
    "--agent", "agents", multiple=True,
    help="Serve only this agent (repeatable; or name it as MODULE:CHOREOGRAPHY.AGENT).",
)  # fmt: skip
@click.option(
    "--namespace", default="agentrace", show_default=True,
    help="Prefix of every Redis key: deployments sharing a Redis keep apart.",
)  # fmt: skip
@click.option(
    "--otlp", envvar="AGENTRACE_OTLP", show_envvar=True, default=None, metavar="URL",
    help="OTLP/HTTP endpoint for this process's spans (agentrace serve). Without it: none.",
)  # fmt: skip
@click.option("--start", is_flag=True, help="Start one run, wait until it is done, and exit.")
@click.option(
    "--input", "input_json", default=None, metavar="JSON", help="The run's input (--start)."
)
@click.option("--key", default=None, help="Ordering key of the run's first message (--start).")
@click.option("--seed", type=int, default=None, help="Seed of ctx.rng (recorded on the run).")
@click.option(
    "--fault", "faults", multiple=True, metavar="KIND[:FIELD=VALUE,...]",
    help="Inject a fault into this process's deliveries (repeatable), e.g. "
    "ack_lost:topic=research.done,attempt=1.",
)  # fmt: skip
@click.option(
    "--time-scale", type=click.FloatRange(min=0, min_open=True), default=None,
    help="Agents' ctx.sleep lasts this many times as long (a scenario's own by default, else 1).",
)  # fmt: skip
@click.option("--concurrency", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--heartbeat", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
    help="Seconds between this process's liveness marks (it counts as dead after 3 missed).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
    help="With --start: seconds to wait for the workers.",
)  # fmt: skip
@click.option(
    "--grace", type=float, default=10.0, show_default=True, help="Seconds to finish on stop."
)
@errors_to_exit
def worker(
    target: str,
    url: str,
    agents: tuple[str, ...],
    namespace: str,
    otlp: str | None,
    start: bool,
    input_json: str | None,
    key: str | None,
    seed: int | None,
    faults: tuple[str, ...],
    time_scale: float | None,
    concurrency: int,
    heartbeat: float,
    timeout: float,
    grace: float,
) -> None:
    """Run a choreography's agent as its own process, on Redis Streams.

    MODULE:AGENT is MODULE:CHOREOGRAPHY.AGENT (or MODULE:CHOREOGRAPHY with --agent, or
    alone for all its agents): CHOREOGRAPHY is a Choreography, a function returning
    one, or one of engine.scenarios.distributed's scenarios (research_pipeline,
    double_consume, double_consume_fixed, lost_event).
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        fail(f"--bus {url}: give a redis:// URL")
    # The engine is imported here so `agentrace --help` stays quick.
    from engine.running import resolve_worker_target

    t = resolve_worker_target(target)
    served = list(agents) or list(t.agents or ())
    value: Any = None
    if input_json is not None:
        try:
            value = orjson.loads(input_json)
        except orjson.JSONDecodeError as exc:
            fail(f"--input: not JSON: {exc}")
    elif t.scenario is not None:
        value = t.scenario.input
    if key is None and t.scenario is not None:
        key = t.scenario.key
    scale = time_scale or (t.scenario.time_scale if t.scenario is not None else 1.0)
    code = asyncio.run(
        _main(
            t, url, served, namespace, otlp, start, value, key, seed, faults, scale, concurrency,
            heartbeat, timeout, grace,
        )
    )  # fmt: skip
    sys.exit(code)


async def _main(
    t: Any, url: str, served: list[str], namespace: str, otlp: str | None, start: bool, value: Any,
    key: str | None, seed: int | None, fault_specs: tuple[str, ...], scale: float,
    concurrency: int, heartbeat: float, timeout: float, grace: float,
) -> int:  # fmt: skip
    import redis

    from engine.running import (
        DistributedChoreographer,
        DistributedScenario,
        Faults,
        RedisBus,
        ScaledTime,
        Worker,
        default_instance,
        faults_from_specs,
    )
    from tracer import OtlpHttpSink, Recorder
    from tracer import conventions as c

    instance = default_instance()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"agentrace worker {instance}: %(message)s"))
    log = logging.getLogger("agentrace.worker")
    log.addHandler(handler)
    log.propagate = False
    time = ScaledTime(scale)
    recorder = None
    if otlp:
        resource = {c.SERVICE_NAME: "agentrace-worker", "service.instance.id": instance}
        recorder = Recorder(OtlpHttpSink(otlp), clock=time.clock, resource=resource)
    choreo = t.choreography
    scenario: DistributedScenario | None = t.scenario

    if start:
        coordinator = DistributedChoreographer(
            recorder, url=url, namespace=namespace, time=time, seed=seed, timeout=timeout
        )
        try:
            result = await coordinator.run(
                choreo, value, key=key, scenario=scenario.name if scenario else None
            )
        finally:
            if recorder is not None:
                recorder.close()
        click.echo(f"run {result.run_id} {result.status}")
        if result.error is not None:
            click.echo(f"agentrace: {result.error}", err=True)
        expected = scenario.expect if scenario is not None else "completed"
        return 0 if result.status == expected else 1

    specs = list(fault_specs)
    plan = faults_from_specs(specs, seed or 0)
    if scenario is not None:
        rules = scenario.faults_for(served or list(choreo.agents))
        if rules:
            plan = Faults([*rules, *(plan.rules if plan else ())], seed=seed or 0)
    bus = RedisBus.from_url(
        url, namespace=namespace, faults=plan, concurrency=concurrency, time=time,
        instance=instance, heartbeat=heartbeat,
    )  # fmt: skip
    client = redis.Redis.from_url(url)
    w = Worker(
        choreo, bus=bus, client=client, recorder=recorder, agents=served or None, time=time,
        seed=seed,
    )  # fmt: skip
    try:
        await w.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop)
        topics = ", ".join(sorted({f"{s.topic} as {s.group}" for s in w.subscriptions}))
        # One line that scripts can wait for.
        click.echo(f"worker {instance} ready: {', '.join(w.agents)} on {topics}")
        sys.stdout.flush()
        await w.serve()
    finally:
        with contextlib.suppress(Exception):
            await w.close(grace)
        client.close()
        if recorder is not None:
            recorder.close()
    click.echo(f"worker {instance} stopped after {w.handled} deliveries", err=True)
    return 0
