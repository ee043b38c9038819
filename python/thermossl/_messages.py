"""Every error and warning text that more than one place of thermossl raises, written once.

A leaf module (no imports): the validation primitives (``_validation``), the status conversion
(``_status``), the backends and the public modules format these templates with ``str.format``.
Messages name the argument (``{name}``) and say what was expected.
"""
from __future__ import annotations

# Arrays -------------------------------------------------------------------------------------
NOT_MATRIX = "{name} must be a 2-D array of shape (N, K), got ndim={ndim}"
NO_STATES = "{name} must have at least one state per row (K >= 1), got shape {shape}"
EMPTY = "{name} must have at least one sample and one state, got shape {shape}"
SHAPE_OF_E = "{name} must have the shape of E {shape}, got {got}"
SAME_SHAPE = "{name} must have shape {shape}, got {got}"

# Vectors (potentials, weights, targets, warm starts) ----------------------------------------
VECTOR_SHAPE = "{name} must have shape ({length},) (one value per {what}), got {shape}"
NOT_FINITE = "{name} must be finite"
NOT_POSITIVE = "{name} must be finite and > 0 everywhere"
NOT_NORMALISED = "{name} must sum to 1, got {total!r}"
NEGATIVE_ENTRY = "{name} must be >= 0 everywhere (a distribution), got {value!r} at index {index}"
POTENTIAL_OVERFLOW = "{name}/T overflows float64 (T={T!r}); give a smaller {name} or a larger T"

# Per-row status of the Gibbs kernels, read from log Z_i -------------------------------------
ROW_NAN = "{name} contains NaN (row {index})"
ROW_NEG_INF = "{name} contains -inf (an infinite score) or E/T overflows in row {index}; energies must be > -inf"
ROW_FORBIDDEN = (
    "{name}: every state of row {index} is forbidden (+inf energy); a Gibbs state needs at least one finite "
    "energy per row"
)
COLUMN_NAN = "E contains NaN (column {index})"
COLUMN_NEG_INF = "E contains -inf (an infinite score) or E/T overflows; energies must be > -inf"
LABEL_NAN = "q contains NaN or inf (row {index})"

# Label states (the ledger kernels' per-row S[q] and sum_y q_iy) -----------------------------
LABELS_NOT_FINITE = "{name} must be finite and nonnegative (row {index})"
LABELS_NOT_NORMALISED = "{name} must be a label state with rows summing to 1 (row {index} sums to {mass!r})"

# Sinkhorn: the status codes of the C++ and CUDA solvers and of the sharded pass -------------
SINKHORN_STATUS = {
    1: ROW_NAN.replace("{name}", "E"),
    2: "E: every state of row {index} is forbidden (+inf energy); the row cannot be labelled",
    3: "E contains -inf (an infinite score) or E/T overflows (row {index})",
    4: "infeasible: state {index} is forbidden (+inf energy) for every sample but its target charge c[{index}] > 0",
}
WARM_START_NOT_FINITE = "mu0 must be finite"
WARM_START_NOT_FINITE_EMPTY = "mu0 must be finite (except, as -inf, on states with target charge c_y = 0)"
NOT_CONVERGED = "sinkhorn did not converge in max_iter={limit} iterations: charge error {err:.3e} > tol={tol:g}"
GAUGE_ROUNDING = (
    "sinkhorn: charge error {err:.3e} > tol={tol:g} in the returned state after {iterations} iterations: "
    "at |mu|/T up to {scale:.3g} the gauge sum_y c_y mu_y = 0 rounds the potentials beyond the "
    "tolerance in {dtype}"
)

# Devices ------------------------------------------------------------------------------------
NO_CUDA_BUILD = (
    "thermossl got a CUDA device array, but this build has no CUDA kernels "
    "(rebuild with nvcc available, THERMOSSL_CUDA=ON), or pass a numpy array"
)
NO_CUDA_DEVICE = "thermossl got a CUDA device array, but no CUDA device is available (driver or GPU missing)"
NO_CUDA_KERNEL = "thermossl.{function} has no CUDA kernel yet: pass numpy arrays"
