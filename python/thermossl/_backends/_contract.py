"""What every backend provides: the kernel functions by name and the ledger kernel's per-row
fields. A leaf module (the backends and tests read it)."""
from __future__ import annotations

KERNELS = (
    "row_logsumexp",
    "row_softmax",
    "row_log_softmax",
    "row_entropy",
    "row_cross_entropy",
    "row_entropy_grad",
    "col_logsumexp",
    "sinkhorn",
    "sinkhorn_pass",
    "ledger_rows",
    "label_rows",
    "row_difference_dot",
)

# The per-row sums of one ledger row (``ledger_rows``), each an (N,) float64 vector.
LEDGER_FIELDS = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss", "label_mass")
