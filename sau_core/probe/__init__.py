"""After a defence, is the backdoor gone? The re-tuning test (:mod:`.reactivation`), the trigger
recovered from shared adversarial examples (:mod:`.recovery`), the verdict (:mod:`.verdict`) and
the whole probe of a checkpoint (:mod:`.run`, ``sau probe``)."""

from .reactivation import Reactivation, ReactivationConfig, first_back, retune, retune_set
from .recovery import (
    RecoveredPattern,
    describe_match,
    describe_recovery,
    match,
    pattern_cosine,
    recover,
    region_score,
    trigger_region,
)
from .run import (
    PROBE_DIR,
    baseline_model,
    probe_checkpoint,
    probe_run,
    read_probe,
    recovered_trigger,
    write_probe,
)
from .verdict import (
    ACC_DROP,
    ASR_HIGH,
    ASR_LOW,
    FIGURE_NAMES,
    PULL,
    THRESHOLDS,
    thresholds_text,
    verdict,
    verdict_from_metrics,
)

__all__ = [
    "ACC_DROP", "ASR_HIGH", "ASR_LOW", "FIGURE_NAMES", "describe_match", "describe_recovery", "PROBE_DIR", "PULL", "THRESHOLDS", "Reactivation",
    "ReactivationConfig", "RecoveredPattern", "baseline_model", "first_back", "match",
    "pattern_cosine", "probe_checkpoint", "probe_run", "read_probe", "recover", "recovered_trigger", "region_score",
    "retune", "retune_set", "thresholds_text", "trigger_region", "verdict", "verdict_from_metrics", "write_probe",
]  # fmt: skip
