"""Rate and speed of the integer (portable) FSDD WaveNet next to the float one.

    PYTHONPATH=src python -m benchmarks.portable_fsdd [--items 4] [--budget 20]

The shipped ``fsdd`` model is an Upscale ARDM (``b = 256``, ``S = 2`` stages, direct
parametrisation, ``K = 65536``) on whole clips of ``D = 4000`` samples (the model's own
input length; no shorter windows).

(a) Rate: on the first ``--items`` FSDD test clips, the exact NLL (bits per sample) of the
    integer digit pmf (``(w + 1) / 2^24``, what the coder would use) and of the float
    model's digit log-probabilities, stage by stage in the model's coding orders
    (``order_from_seed(D, order_seed + s)``) under the joint budget-``--budget`` policy
    (``m.stage_policies(budget, mode="joint")``), each step's variables modelled
    independently given the state, as ``exact_nll_bpd`` walks them (the float number is
    checked against it). Both for every width in ``--widths`` (``n``: 8-bit conv inputs,
    ``w``: 14-bit, as two 7-bit limbs; one letter each for the dilated convs, the 1x1 convs
    after the gate and the head).
(b) Speed: one network call on one thread, median of ``--repeats`` calls, for one clip and
    per clip of a batch of 16: the float32 WaveNet, the integer logits (time terms kept, as a
    coder's later items find them) and the integer logits plus the digit pmf.

The integer nets are frozen with ranges calibrated on ``--calib`` training clips (never the
test clips). Writes ``benchmarks/results/portable_fsdd.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ardm
from ardm.core.objective import LN2
from ardm.core.orders import order_from_seed
from ardm.core.policy import step_bounds
from ardm.core.upscale import coarsen, digit
from ardm.data.items import model_items
from ardm.models.upscale import UpscaleARDM
from ardm.portable.pmf import pmf_nll_bits
from ardm.portable.quant import NARROW, WIDE
from ardm.portable.wavenet import IntegerWaveNet, Widths
from benchmarks.machine import median_ms, write_results


def widths_of(code: str) -> Widths:
    """``"wnw"`` -> :class:`Widths` (``n`` 8-bit, ``w`` 14-bit)."""
    return Widths(*[NARROW if c == "n" else WIDE for c in code])


def nll_bits(
    m: UpscaleARDM, inets: dict[str, IntegerWaveNet], x: torch.Tensor, budget: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-clip NLL in bits ``(N,)`` of the float model and of each integer net."""
    N, D, S, b = x.shape[0], m.D, m.S, m.b
    policies = m.stage_policies(budget, mode="joint")
    float_bits = torch.zeros(N, dtype=torch.float64)
    int_bits = {k: torch.zeros(N, dtype=torch.float64) for k in inets}
    for s in range(S):
        sigma = order_from_seed(D, m.order_seed + s)  # (D,)
        past, nxt = coarsen(x, s, b=b, S=S), coarsen(x, s + 1, b=b, S=S)  # (N, D) each
        d = digit(x, s, b=b, S=S)  # (N, D)
        for left, right in step_bounds(policies[s], D):
            known = (sigma < left).view(1, D).expand(N, D)  # (N, D)
            step = ((sigma >= left) & (sigma < right)).view(1, D).expand(N, D)
            x_cur = torch.where(known, nxt, past)  # (N, D)
            with torch.no_grad():
                lp = m.stage_log_probs(x_cur, known, s, left).double()  # (N, D, b)
            chosen = lp.gather(-1, d.unsqueeze(-1)).squeeze(-1)  # (N, D)
            float_bits -= (chosen * step).sum(1) / LN2
            t = torch.full((N,), s * D + left)
            for k, inet in inets.items():
                w = inet.digit_pmf(x_cur, known, t)  # (N, D, b)
                int_bits[k] += (pmf_nll_bits(w, d) * step).sum(1)
    return float_bits, int_bits


def call_ms(
    m: UpscaleARDM, inet: IntegerWaveNet, x: torch.Tensor, B: int, repeats: int
) -> tuple[float, float, float]:
    """Per-clip ms of one call at batch ``B`` (stage 1, half known): float32, integer
    logits (time terms kept), integer logits and digit pmf."""
    D = m.D
    xb = x[:1].expand(B, D).contiguous()
    known = (order_from_seed(D, m.order_seed + 1) < D // 2).view(1, D).expand(B, D)
    x_cur = torch.where(known, xb, coarsen(xb, 1, b=m.b, S=m.S))
    tb = torch.full((B,), D + D // 2)
    with torch.no_grad():
        float_ms = median_ms(lambda: m.net(x_cur, known, tb), repeats)
    int_ms = median_ms(lambda: inet.logits(x_cur, known, tb), repeats)
    pmf_ms = median_ms(lambda: inet.digit_pmf(x_cur, known, tb), repeats)
    return float_ms / B, int_ms / B, pmf_ms / B


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=4)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--widths", default="nnn,www", help="comma-separated; the last is timed")
    args = ap.parse_args()

    m = ardm.load("fsdd")
    assert isinstance(m, UpscaleARDM)
    net = m.net.eval()
    calib = model_items(m, "train", args.calib)
    inets, freeze_s = {}, {}
    for code in args.widths.split(","):
        t0 = time.perf_counter()
        inets[code] = IntegerWaveNet.from_float(net, calib, passes=4, widths=widths_of(code))
        freeze_s[code] = round(time.perf_counter() - t0, 2)
    x = model_items(m, "test", args.items)
    fb, ib = nll_bits(m, inets, x, args.budget)
    n = m.D * len(x)
    float_bps = float(fb.sum()) / n
    check = float(m.exact_nll_bpd(x, policies=m.stage_policies(args.budget, mode="joint")).mean())
    rates = {k: float(v.sum()) / n for k, v in ib.items()}

    timed = args.widths.split(",")[-1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    speed = {B: call_ms(m, inets[timed], x, B, args.repeats) for B in (1, 16)}
    torch.set_num_threads(threads)
    float_ms, int_ms, _ = speed[1]

    payload = {
        "items": args.items,
        "clip_samples": m.D,
        "budget": args.budget,
        "policy": "m.stage_policies(budget, mode='joint')",
        "calibration_items": args.calib,
        "freeze_seconds": freeze_s,
        "float_bits_per_sample": round(float_bps, 5),
        "float_bits_per_sample_exact_nll_bpd": round(check, 5),
        "integer": {
            k: {
                "widths": widths_of(k).__dict__,
                "bits_per_sample": round(v, 5),
                "rate_cost_percent": round(100 * (v / float_bps - 1), 3),
            }
            for k, v in rates.items()
        },
        "timed_widths": timed,
        "per_clip_ms": {
            f"batch_{B}": {
                "float32": round(v[0], 2),
                "integer_logits": round(v[1], 2),
                "integer_logits_and_pmf": round(v[2], 2),
                "ratio": round(v[1] / v[0], 2),
            }
            for B, v in speed.items()
        },
        "call_ratio": round(int_ms / float_ms, 2),
        "targets": {"rate_cost_percent": 1.0, "call_ratio": 1.5},
    }
    rows = [
        f"| integer `{k}` | {v:.4f} | {100 * (v / float_bps - 1):+.2f} % |"
        for k, v in rates.items()
    ]
    table = "\n".join(
        [
            f"FSDD, first {args.items} test clips ({m.D} samples each), joint budget "
            f"{args.budget} over S = {m.S} stages, model coding orders",
            "",
            "| path | bits/sample | rate cost |",
            "| --- | ---: | ---: |",
            f"| float32 (today) | {float_bps:.4f} | |",
            *rows,
            "",
            "Widths: one letter each for the inputs of the dilated convs, the 1x1 convs after "
            "the gate and the head; `n` 8-bit, `w` 14-bit (two 7-bit limbs).",
            "",
            f"| one call (integer `{timed}`), 1 thread | float32 | integer logits | + digit pmf |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {'1 clip' if B == 1 else f'per clip at batch {B}'} | {v[0]:.1f} ms | "
                f"{v[1]:.1f} ms ({v[1] / v[0]:.2f}x) | {v[2]:.1f} ms |"
                for B, v in speed.items()
            ),
            "",
            f"Float bits/sample from `exact_nll_bpd`: {check:.4f}. Targets: rate cost <= 1 %, "
            "integer call <= 1.5x the float32 call.",
        ]
    )
    write_results("portable_fsdd", payload, table)


if __name__ == "__main__":
    main()
