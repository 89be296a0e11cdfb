"""Drift theory for scripts/results.py: the parameter count d of a GGUF file and the predicted norm of
θ_t − θ0 when ES rewards carry no information (reference/papers.md §7). Pure functions, standard
library only.

The model. ES with population N, step size α and z-scored rewards z (Σₙ zₙ² = N) updates
θ ← θ + (α/N) Σₙ zₙ εₙ with εₙ ~ N(0, I_d). When the rewards are independent of the noise, every
element of the step is N(0, s²) with s² = α²/N exactly, whatever z is, and steps are independent
across iterations. AWD (adaptive weight decay) then pulls the displacement δ = θ − θ0 back towards
0 after each step:
  - none:  δ_t = δ_{t−1} + step,                       E‖δ_t‖² = d s² t;
  - l2:    δ_t = ρ(δ_{t−1} + step), ρ = 1 − αλ,        E‖δ_t‖² = d s² ρ² (1 − ρ^{2t}) / (1 − ρ²);
  - l1:    δ_t = soft(δ_{t−1} + step, τ), τ = αλ,      soft(x, τ) = sign(x)·max(|x| − τ, 0), per element,
           no closed form: E δ_t² is evolved numerically on a grid ([`l1_second_moment`]).
"""

import math
import struct

# ---------------------------------------------------------------------------------------------
# the parameter count d, read from the GGUF header (independent of evotune's loader)

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_parameter_count(path):
    """d = Σ over tensors of Π dims, from the tensor infos of a GGUF v2/v3 file."""
    with open(path, "rb") as f:

        def read(fmt):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def read_str():
            return f.read(read("Q"))

        def skip_value(kind):
            if kind in GGUF_SCALAR:
                read(GGUF_SCALAR[kind])
            elif kind == 8:
                read_str()
            elif kind == 9:
                inner, count = read("I"), read("Q")
                if inner in GGUF_SCALAR:
                    f.seek(struct.calcsize("<" + GGUF_SCALAR[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip_value(inner)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = read("I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = read("Q"), read("Q")
        for _ in range(n_kv):
            read_str()
            skip_value(read("I"))
        total = 0
        for _ in range(n_tensors):
            read_str()
            dims = [read("Q") for _ in range(read("I"))]
            read("I")
            read("Q")
            total += math.prod(dims)
        return total


def implied_parameter_count(n, alpha, first_drift):
    """d implied by the first step of a plain-ES run: ‖Δθ_1‖² = (α²/N)·Σ of d squares of N(0, 1),
    so d ≈ N(‖Δθ_1‖/α)², within a relative √(2/d)."""
    return n * (first_drift / alpha) ** 2


def drift_ratio_spread(d):
    """Sampling spread of measured/predicted ‖θ_t−θ0‖: ‖δ‖² sums d independent terms, so its relative
    sd is √(2/d) and that of ‖δ‖ about 1/√(2d)."""
    return 1 / math.sqrt(2 * d)


# ---------------------------------------------------------------------------------------------
# drift predictions: per-element step ~ N(0, s²), s² = α²/N, exactly, when the z-scored rewards are
# independent of ε (Σ z² = N)


def predicted_drift(alpha, n, d, t, awd, lam):
    """√E‖θ_t − θ0‖² under independent rewards after t iterations, s² = α²/N:
    none √(d s² t); l2 √(d s² ρ²(1 − ρ^{2t})/(1 − ρ²)) with ρ = 1 − αλ (from V_t = ρ²(V_{t−1} + s²));
    l1 √(d·E δ_t²) of the soft-threshold chain with τ = αλ ([`l1_second_moment`])."""
    s2 = alpha * alpha / n
    if awd == "none":
        return math.sqrt(d * s2 * t)
    if awd == "l2":
        rho = 1.0 - alpha * lam  # δ ← ρ(δ + step): V_t = ρ²(V_{t−1} + s²)
        return math.sqrt(d * s2 * rho * rho * (1 - rho ** (2 * t)) / (1 - rho * rho))
    return math.sqrt(d * l1_second_moment(math.sqrt(s2), alpha * lam, t))


def predicted_drift_active(alpha, n, d, active, awd, lam):
    """As [`predicted_drift`] for a run whose iteration t made a step only where active[t]: an
    iteration whose rewards all tie has z = 0 and no step, but AWD still decays δ. With s² = α²/N:
    none √(d s² Σ active); l2 √(d V_T) with V_t = ρ²(V_{t−1} + s²·active[t]); l1 the grid chain
    of [`l1_chain`]."""
    s2 = alpha * alpha / n
    if awd == "none":
        return math.sqrt(d * s2 * sum(active))
    if awd == "l2":
        rho, v = 1.0 - alpha * lam, 0.0
        for a in active:
            v = rho * rho * (v + (s2 if a else 0.0))
        return math.sqrt(d * v)
    return math.sqrt(d * l1_chain(math.sqrt(s2), alpha * lam, active))


def stationary_l2(alpha, n, d, lam):
    """The papers' approximation √(αd/(2λN)) of the AWD-l2 stationary norm (the limit of the l2 law
    above for small αλ: ρ²/(1 − ρ²) ≈ 1/(2αλ))."""
    return math.sqrt(alpha * d / (2 * lam * n))


# ---------------------------------------------------------------------------------------------
# the AWD-l1 chain δ ← soft(δ + s·ξ, τ), ξ ~ N(0, 1), δ_0 = 0, evolved as a probability mass on a grid


def _l1_grid(s, tau):
    """A fresh grid for the l1 chain: spacing h = τ/k ≤ s/8 (k = ⌈8τ/s⌉ cells per threshold), wide
    enough for the stationary rms s²/(√2 τ) and the kernel, all mass at 0; and the Gaussian kernel
    of variance s² sampled on it (±6s, normalised). Returns (xs, kernel, kernel_half, half, k, p)."""
    k_tau = max(1, math.ceil(8 * tau / s))
    h = tau / k_tau
    stationary_rms = s * s / (math.sqrt(2) * tau)
    half = int(math.ceil((10 * max(stationary_rms, s) + 6 * s) / h))
    xs = [(i - half) * h for i in range(2 * half + 1)]
    p = [0.0] * len(xs)
    p[half] = 1.0
    kernel_half = int(math.ceil(6 * s / h))
    kernel = [math.exp(-0.5 * (k * h / s) ** 2) for k in range(-kernel_half, kernel_half + 1)]
    ksum = sum(kernel)
    kernel = [k / ksum for k in kernel]
    return xs, kernel, kernel_half, half, k_tau, p


def _l1_step(p, kernel, kh, half, k_tau, step):
    """One iteration of the chain on the grid: the mass p convolved with the kernel (if `step`), then
    soft-thresholded by τ = k_tau cells, which moves each cell's mass exactly to another cell."""
    m = len(p)
    conv = p
    if step:
        conv = [0.0] * m
        for i, pi in enumerate(p):
            if pi < 1e-15:
                continue
            for j in range(max(0, i - kh), min(m - 1, i + kh) + 1):
                conv[j] += pi * kernel[j - i + kh]
    q = [0.0] * m
    for j, pj in enumerate(conv):
        off = j - half  # x = off·h; soft-thresholding by τ = k_tau·h moves it to off ∓ k_tau
        if abs(off) <= k_tau:
            q[half] += pj
        else:
            q[j - k_tau if off > 0 else j + k_tau] += pj
    return q


_L1_CACHE = {}  # (s, τ) -> (grid, mass after the last evolved iteration, E δ_t² for t = 0, 1, …)


def l1_second_moment(s, tau, t):
    """E δ_t² of the chain δ ← sign(x)·max(|x| − τ, 0), x = δ + s·ξ, δ_0 = 0, by evolving its
    probability mass on a grid of spacing h = τ/k ≤ s/8: the threshold is a whole number of cells, so
    soft-thresholding moves mass exactly from cell to cell, and the sampled Gaussian kernel's variance
    is s² up to terms of order exp(−2π²s²/h²). Moments are cached per (s, τ)."""
    key = (s, tau)
    if key not in _L1_CACHE:
        grid = _l1_grid(s, tau)
        _L1_CACHE[key] = (grid, grid[5], [0.0])
    grid, p, moments = _L1_CACHE[key]
    xs, kernel, kh, half, k_tau, _ = grid
    while len(moments) <= t:
        p = _l1_step(p, kernel, kh, half, k_tau, True)
        moments.append(sum(pi * x * x for pi, x in zip(p, xs)))
    _L1_CACHE[key] = (grid, p, moments)
    return moments[t]


def l1_chain(s, tau, active):
    """E δ² after the AWD-l1 chain of [`l1_second_moment`] run with a step only where `active`;
    inactive iterations only soft-threshold."""
    xs, kernel, kh, half, k_tau, p = _l1_grid(s, tau)
    for a in active:
        p = _l1_step(p, kernel, kh, half, k_tau, a)
    return sum(pi * x * x for pi, x in zip(p, xs))
