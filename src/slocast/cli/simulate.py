"""`simulate`: real traces replayed through decision policies side by side."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from slocast.artifacts import load_bundle
from slocast.cli._common import (
    JsonOpt,
    app,
    err,
    exit_codes,
    progress_steps,
    require_extra,
)
from slocast.datasets import load_dataset
from slocast.errors import EmptyDataError, InputError


def _autoscale_policies(scenario: Any, names: list[str]) -> list[Any]:
    from slocast.decisions.autoscaler import HPA, KedaRps, PredictiveAutoscaler, ReplicaCorrector

    rate, slo, percentile = scenario.service_rate, scenario.slo_s, scenario.percentile
    startup = scenario.startup_s  # the model-based controllers know how long a pod takes
    every = {
        "hpa": lambda: HPA(),
        # Same utilisation target as the HPA, expressed as requests per replica.
        "keda-rps": lambda: KedaRps(rate * 0.6),
        "erlang-pid": lambda: ReplicaCorrector(rate, slo, percentile, startup_s=startup),
        "predictive": lambda: PredictiveAutoscaler(rate, slo, percentile, startup_s=startup),
    }
    return _pick(every, names)


def _pick(every: dict[str, Callable[[], Any]], names: list[str]) -> list[Any]:
    if names == ["all"]:
        names = list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise InputError(
            f"unknown policy {unknown[0]!r} for this scenario; known: {', '.join(every)}",
            field="policy",
        )
    return [every[n]() for n in names]


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option(help="autoscale | route | place | pipeline")],
    trace: Annotated[
        str,
        typer.Option(help="KIND:PATH: twitter (rates), azure, mooncake, alibaba-stages (dir)."),
    ],
    policy: Annotated[
        list[str] | None, typer.Option(help="Policy to run (repeatable), or all (default).")
    ] = None,
    slo_ms: Annotated[
        float | None, typer.Option(help="Latency SLO (autoscale: response; route: TTFT).")
    ] = None,
    percentile: Annotated[float, typer.Option(help="Autoscale: SLO percentile.")] = 0.99,
    start_s: Annotated[int, typer.Option(help="Rate traces: first second to replay.")] = 0,
    history_s: Annotated[
        int,
        typer.Option(
            help="Autoscale: seconds before --start-s on record when the replay starts (up to "
            "the trace's start); the predictive scaler replays them through its forecasters, "
            "the reactive policies have no use for them."
        ),
    ] = 86_400,
    duration_s: Annotated[
        int | None, typer.Option(help="Rate traces: seconds to replay (default: 6 h).")
    ] = 6 * 3600,
    service_ms: Annotated[
        float, typer.Option(help="Autoscale: mean service time (SLO default: 10x this).")
    ] = 100.0,
    startup_s: Annotated[float, typer.Option(help="Autoscale: replica start-up time.")] = 20.0,
    requests: Annotated[
        int | None, typer.Option(help="Route: replay only the first N requests.")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Route: model-server replicas.")] = 4,
    load: Annotated[
        float, typer.Option(help="Route: arrival-rate multiplier (compresses time).")
    ] = 1.0,
    retrain_every: Annotated[
        int,
        typer.Option(
            help="Route: scored requests between refits of the SLO-aware router's model on "
            "the outcomes known so far (0: never)."
        ),
    ] = 500,
    router_coverage: Annotated[
        float,
        typer.Option(
            help="Route: coverage of the TTFT bounds the SLO-aware router compares (a 0.99 "
            "bound of one request is estimated from the thin tail and ranks replicas by noise)."
        ),
    ] = 0.9,
    router_margin: Annotated[
        float,
        typer.Option(
            help="Route: replicas whose bound is within this share of the lowest (or meets the "
            "SLO) count as good enough; among them the SLO-aware router keeps the prompt where "
            "it is cached (0: the lowest bound only, unless others meet the SLO)."
        ),
    ] = 0.5,
    shed_above: Annotated[
        float,
        typer.Option(
            help="Route: slo-aware-shed turns a request away when its predicted median TTFT "
            "exceeds this multiple of the SLO on every replica (1: wherever it goes, it is "
            "likelier to miss the SLO than to meet it)."
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for every random draw.")] = 0,
    predictor_bundle: Annotated[
        Path | None,
        typer.Option(
            help="Route: the SLO-aware router predicts TTFT with this llm-ttft bundle "
            "(default: a model learned from the simulation's warm-up telemetry)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write latency CDF + replicas plot (PNG).")
    ] = None,
) -> None:
    """Replay a real trace through decision policies side by side (discrete-event, simpy)."""
    with exit_codes():
        require_extra("simpy", "sim", "slocast simulate")
        if seed < 0:  # numpy's generators take none
            raise InputError(f"--seed must be >= 0, got {seed}", field="seed")
        from slocast.sim.plots import plot_results
        from slocast.sim.traces import parse_trace_arg

        kind, path = parse_trace_arg(trace)
        names = policy or ["all"]
        with progress_steps() as step:
            if scenario == "autoscale":
                results = _run_autoscale(
                    kind, path, names, slo_ms, percentile, start_s, duration_s,
                    service_ms, startup_s, seed, step, history_s,
                )  # fmt: skip
            elif scenario == "route":
                results = _run_route(
                    kind, path, names, slo_ms, requests, replicas, load, seed, step,
                    predictor_bundle, retrain_every, router_coverage, router_margin, shed_above,
                )  # fmt: skip
            elif scenario == "place":
                results = _run_place(kind, path, names, slo_ms, replicas, load, seed, step)
            elif scenario == "pipeline":
                _pipeline(kind, path, trace, seed, as_json, plot)
                return
            else:
                raise InputError(
                    f"unknown scenario {scenario!r}; known: autoscale, route, place, pipeline",
                    field="scenario",
                )
        payload = {
            "scenario": scenario,
            "trace": trace,
            "policies": {name: r.summary() for name, r in results.items()},
        }
        if plot:
            plot_results(results, plot, f"slocast simulate {scenario}: {path.name}")
        if as_json:
            sys.stdout.write(json.dumps(payload, default=float) + "\n")
        else:
            table = Table(title=f"{scenario} on {path.name}")
            columns = ["slo_attainment_pct", "p50_ms", "p90_ms", "p99_ms", "replica_seconds",
                       "scale_events", "dropped"]  # fmt: skip
            table.add_column("policy")
            for column in columns:
                table.add_column(column, justify="right")
            for name, summary in payload["policies"].items():  # type: ignore[attr-defined]
                table.add_row(name, *(f"{summary[c]:,.2f}" for c in columns))
            Console(width=160).print(table)
        if plot:
            err.print(f"plot: {plot}")


def _run_place(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    servers: int,
    load: float,
    seed: int,
    step: Callable[[str], None],
) -> dict[str, Any]:
    from slocast.sim.place import PlacementRequests, PlaceScenario, simulate_place

    if kind != "alibaba-lora":
        raise InputError("the place scenario replays alibaba-lora:PATH requests", field="trace")
    requests = PlacementRequests.from_frame(load_dataset(f"{kind}:{path}").frame)
    scenario = PlaceScenario(
        servers=servers,
        load=load,
        slo_s=(slo_ms or PlaceScenario.slo_s * 1000.0) / 1000.0,
        seed=seed,
    )
    names_only: dict[str, Callable[[], Any]] = {
        n: partial(str, n) for n in ("round-robin", "least-loaded", "random", "cache-aware")
    }
    results = {}
    for name in _pick(names_only, names):
        step(f"replaying {name}")
        results[name] = simulate_place(requests, name, scenario)
    return results


def _pipeline(
    kind: str, path: Path, trace: str, seed: int, as_json: bool, plot: Path | None
) -> None:
    """Stage-latency forecasting for smoothing: no smoothing vs untrained vs learned blend vs
    online expert weights."""
    from slocast.sim.pipeline import compare_smoothers, load_stage_series, online_weights
    from slocast.sim.plots import plot_pipeline

    if kind != "alibaba-stages":
        raise InputError("the pipeline scenario reads alibaba-stages:DIR", field="trace")
    series = load_stage_series(path)
    errors = compare_smoothers(series, seed=seed)
    if plot:
        title = f"slocast simulate pipeline: {path.name}"
        plot_pipeline(errors, online_weights(series), plot, title)
        err.print(f"plot: {plot}")
    variants = ("no-smoothing", "untrained", "learned", "online")
    policies = {
        v: {
            "mae_log_latency": float(np.mean([e[v] for e in errors.values()])),
            **{f"mae_{stage}": e[v] for stage, e in errors.items()},
        }
        for v in variants
    }
    if as_json:
        payload = {"scenario": "pipeline", "trace": trace, "policies": policies}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(title="next-minute stage latency: mean absolute error (log), newer 30%")
    table.add_column("variant")
    for stage in errors:
        table.add_column(stage, justify="right")
    table.add_column("mean", justify="right")
    for v in variants:
        cells = [f"{errors[stage][v]:.4f}" for stage in errors]
        table.add_row(v, *cells, f"{policies[v]['mae_log_latency']:.4f}")
    Console(width=140).print(table)


def _run_autoscale(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    percentile: float,
    start_s: int,
    duration_s: int | None,
    service_ms: float,
    startup_s: float,
    seed: int,
    step: Callable[[str], None],
    history_s: int,
) -> dict[str, Any]:
    from slocast.sim import AutoscaleScenario, simulate_autoscale
    from slocast.sim.traces import load_rates

    if kind != "twitter":
        raise InputError(
            "the autoscale scenario replays a rate trace (twitter:PATH)", field="trace"
        )
    for flag, value in (("start_s", start_s), ("history_s", history_s)):
        if value < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0", field=flag)
    if duration_s is not None and duration_s < 1:
        raise InputError(f"--duration-s must be >= 1, got {duration_s}", field="duration_s")
    if not 0 < service_ms < math.inf:
        raise InputError(
            f"--service-ms must be a finite number > 0, got {service_ms}", field="service_ms"
        )
    first = max(0, start_s - history_s)
    on_record = start_s - first
    rates = load_rates(path, first, None if duration_s is None else on_record + duration_s)
    history, rates = rates[:on_record], rates[on_record:]
    if len(rates) == 0:
        raise EmptyDataError("no seconds in the selected slice", source=str(path))
    scenario = AutoscaleScenario(
        service_rate=1000.0 / service_ms,
        slo_s=(slo_ms or 10.0 * service_ms) / 1000.0,
        percentile=percentile,
        startup_s=startup_s,
        seed=seed,
    )
    results = {}
    for policy in _autoscale_policies(scenario, names):
        name = str(policy.name)

        def report(done: float, name: str = name) -> None:
            step(f"{name}: {done:.0%}")

        results[name] = simulate_autoscale(rates, policy, scenario, report, history)
        phase = getattr(policy, "phase", None)
        if phase is not None:
            results[name].extra.update(
                history_s=float(on_record),
                reservations=float(policy.reservations),
                phase_period_s=float(phase.period or 0),
            )
    return results


def _run_route(
    kind: str,
    path: Path,
    names: list[str],
    slo_ms: float | None,
    requests: int | None,
    replicas: int,
    load: float,
    seed: int,
    step: Callable[[str], None],
    predictor_bundle: Path | None = None,
    retrain_every: int = 500,
    router_coverage: float = 0.9,
    router_margin: float = 0.5,
    shed_above: float = 1.0,
) -> dict[str, Any]:
    from slocast.decisions.router import (
        LeastLoaded,
        LeastWork,
        PrefixAware,
        RoundRobin,
        SLOAwareRouter,
        check_router_options,
    )
    from slocast.sim.route import (
        RouteScenario,
        Telemetry,
        bundle_ttft_predictor,
        simulate_route,
        train_ttft_predictor,
    )
    from slocast.sim.traces import load_llm_requests

    if not 0.0 < router_coverage < 1.0:
        raise InputError("router coverage must be in (0, 1)", field="router_coverage")
    check_router_options(router_margin, shed_above)
    trace = load_llm_requests(kind, path, requests)
    scenario = RouteScenario(
        replicas=replicas,
        ttft_slo_s=(slo_ms or 2000.0) / 1000.0,
        load=load,
        retrain_every=retrain_every,
    )

    def learner(rows: Any) -> Any:
        return train_ttft_predictor(rows, router_coverage, seed)

    if predictor_bundle is not None:
        predictor = bundle_ttft_predictor(load_bundle(predictor_bundle), router_coverage)
    else:
        step("warm-up: collecting routing telemetry")
        telemetry = Telemetry()
        simulate_route(trace, LeastLoaded(), scenario, telemetry)
        rows = telemetry.frame()
        # Train only on outcomes known before the scored part of the trace begins.
        warm_end = float(trace.arrival_s[int(len(trace) * scenario.warmup_fraction)]) / load
        known = rows[rows["known_at"] <= warm_end] if len(rows) else rows
        if len(known) == 0:
            raise InputError(
                f"no request of the warm-up (the first {scenario.warmup_fraction:.0%} of "
                f"{len(trace)} requests) had its first token before scoring starts: the "
                "router's TTFT model has nothing to learn from; replay more requests "
                "(--requests)",
                field="requests",
            )
        step(f"training the TTFT model on {len(known)} rows")
        predictor = learner(known)
    every = {
        "round-robin": RoundRobin,
        "least-loaded": LeastLoaded,
        "least-work": LeastWork,
        "prefix-aware": PrefixAware,
        "slo-aware": lambda: SLOAwareRouter(predictor, scenario.ttft_slo_s, margin=router_margin),
        "slo-aware-spread": lambda: SLOAwareRouter(
            predictor, scenario.ttft_slo_s, spread=True, seed=seed, margin=router_margin
        ),
        # Admission control: a request no replica can serve within the SLO is turned away
        # (a miss in the attainment), not queued behind others it would delay.
        "slo-aware-shed": lambda: SLOAwareRouter(
            predictor, scenario.ttft_slo_s, shed=True, margin=router_margin, shed_above=shed_above
        ),
    }
    results = {}
    for router in _pick(every, names):
        step(f"replaying {router.name}")
        # A router that learned from the warm-up keeps learning from its own outcomes.
        learns = predictor_bundle is None and isinstance(router, SLOAwareRouter)
        results[router.name] = simulate_route(
            trace, router, scenario, learner=learner if learns else None
        )
    return results
