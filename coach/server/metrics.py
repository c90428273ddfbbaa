"""``/metrics``: the live service in Prometheus text format (issue 6).

Figures are read when scraped, from the objects that own them: the call registry (live calls,
each call's lag and queued audio), the ASR scheduler (queue depth, model time per audio second),
:class:`ServiceCounters`, which the calls and readers count into as they go, and in cluster mode
this node's part in the cluster (Redis reachable, messages waiting and sent).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from coach.asr.ladder import RUNGS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class ServiceCounters:
    """Monotonic counts since the server started; incremented on the event loop only."""

    calls_started: int = 0
    calls_ended: int = 0
    prompts: Counter = field(default_factory=Counter)  # by kind
    signals: Counter = field(default_factory=Counter)  # by label
    events: int = 0
    errors: Counter = field(default_factory=Counter)  # by where: "pipeline", "store", "ingest"
    readers_dropped: int = 0
    redactions: int = 0  # personal data replaced in transcripts and evidence
    refused: Counter = field(default_factory=Counter)  # connections and streams refused, by reason


class ServiceCollector:
    def __init__(self, state) -> None:
        self.state = state  # coach.server.state.ServerState

    def collect(self):
        state = self.state
        registry, scheduler, counts = state.registry, state.scheduler, state.counters
        live = list(registry.live.values())
        yield GaugeMetricFamily("coach_live_calls", "Calls streaming now", value=len(live))
        lag = GaugeMetricFamily("coach_call_lag_seconds", "Seconds of a live call's received audio not yet analysed", labels=["call_id"])
        queued = GaugeMetricFamily("coach_call_audio_queue_frames", "Audio frames waiting for a live call's pipeline", labels=["call_id"])
        for call in live:
            lag.add_metric([call.call_id], call.lag)
            queued.add_metric([call.call_id], call.queued_frames)
        yield lag
        yield queued
        yield GaugeMetricFamily("coach_call_lag_max_seconds", "The largest lag of any live call", value=max((c.lag for c in live), default=0.0))
        yield GaugeMetricFamily("coach_backlog_seconds", "How long the most overdue final has waited for the speech model: new calls are refused above COACH_SERVER__REFUSE_LAG",
                                value=registry.backlog())
        yield GaugeMetricFamily("coach_asr_queue_depth", "Transcriptions waiting for the speech model", value=scheduler.queued)
        yield GaugeMetricFamily("coach_asr_running", "Transcriptions running now", value=scheduler.running)
        yield CounterMetricFamily("coach_asr_interims_shed", "Interims dropped under load (stale before the model was free)", value=scheduler.interims_shed)
        yield CounterMetricFamily("coach_asr_interims_deferred", "Chunks whose interim was not asked for while the model fell behind", value=scheduler.interims_deferred)
        yield CounterMetricFamily("coach_asr_batches", "Model calls made (each decodes one or more jobs)", value=scheduler.batches)
        yield CounterMetricFamily("coach_asr_batched_jobs", "Jobs decoded, in all the model calls", value=scheduler.batched_jobs)
        yield CounterMetricFamily("coach_asr_busy_seconds", "Model time spent transcribing", value=scheduler.busy_seconds)
        yield CounterMetricFamily("coach_asr_audio_seconds", "Audio transcribed (a party's utterances, chunks and tails)", value=scheduler.audio_seconds)
        ladder = scheduler.ladder
        if ladder is not None:
            yield GaugeMetricFamily("coach_asr_rung", "The quality ladder's rung: 0 full, 1 fewer interims, 2 greedy finals, 3 finals held to batch, 4 long finals in pieces",
                                    value=ladder.rung)
            yield CounterMetricFamily("coach_asr_rungs_taken", "Rungs of the quality ladder taken as finals fell behind", value=ladder.climbs)
            yield CounterMetricFamily("coach_asr_rungs_given_back", "Rungs of the quality ladder given back as the lag recovered", value=ladder.descents)
        finals = CounterMetricFamily("coach_asr_finals", "Finals' decodes taken up, by the ladder's rung then", labels=["rung"])
        for rung, n in enumerate(scheduler.finals_by_rung):
            finals.add_metric([RUNGS[rung]], n)
        yield finals
        yield CounterMetricFamily("coach_asr_finals_held_for_batch", "Lone finals held briefly for others to decode with (batching rung)", value=scheduler.held_for_batch)
        yield CounterMetricFamily("coach_asr_finals_in_pieces", "Long finals decoded in bounded pieces (top rung)", value=scheduler.pieced)
        rtf = scheduler.busy_seconds / scheduler.audio_seconds if scheduler.audio_seconds else 0.0
        yield GaugeMetricFamily("coach_asr_real_time_factor", "Model seconds per second of audio transcribed, since start", value=rtf)
        yield CounterMetricFamily("coach_calls_started", "Calls started", value=counts.calls_started)
        yield CounterMetricFamily("coach_calls_ended", "Calls ended", value=counts.calls_ended)
        yield CounterMetricFamily("coach_events", "Events published to call streams", value=counts.events)
        yield _by_label("coach_prompts_sent", "Prompts put on agents' screens", "kind", counts.prompts)
        yield _by_label("coach_signals", "Signals raised", "label", counts.signals)
        yield _by_label("coach_errors", "Failures: a call's analysis, a store write, a refused stream", "where", counts.errors)
        yield CounterMetricFamily("coach_readers_dropped", "Websocket readers closed for falling behind", value=counts.readers_dropped)
        yield CounterMetricFamily("coach_redactions", "Personal data replaced in transcripts and evidence", value=counts.redactions)
        yield _by_label("coach_refused", "Connections and streams refused", "reason", counts.refused)
        cluster = state.cluster
        if cluster is not None:
            yield GaugeMetricFamily("coach_cluster_redis_up", "Whether this node reaches Redis now (1) or its messages wait for it (0)",
                                    value=float(cluster.away is None))
            yield GaugeMetricFamily("coach_cluster_outbox", "Messages waiting to be sent to Redis", value=cluster.waiting)
            yield CounterMetricFamily("coach_cluster_published", "Messages sent to Redis for the other nodes", value=cluster.counters.published)
            yield CounterMetricFamily("coach_cluster_dropped", "Messages dropped from a full outbox while Redis was away (the database has them)",
                                      value=cluster.counters.dropped)
            yield CounterMetricFamily("coach_cluster_remote_readers", "Readers served a call live on another node", value=cluster.counters.remote_readers)
            yield CounterMetricFamily("coach_cluster_calls_interrupted", "Calls of dead nodes sealed by this node", value=cluster.counters.interrupted)


def _by_label(name: str, help_text: str, label: str, counts: Counter) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], n)
    return family


def render(state) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(state))
    return generate_latest(registry)
