"""Rate and speed of the integer (portable) CIFAR-10 U-Net with its logistic-mixture pmf.

    PYTHONPATH=src python -m benchmarks.portable_cifar [--items 10] [--budget 20]

The shipped ``cifar10-subset`` model: a U-Net whose 30 outputs per sub-pixel parametrise a
10-component discretised logistic mixture over ``K = 256``.

(a) Rate: on the first ``--items`` test items, the exact NLL (bits per dim) of the integer
    pmf (``(w + 1) / 2^24`` from :func:`ardm.portable.pmf.mixture_pmf`, what the coder would
    use) and of the float model's log-probabilities, under the model's coding order and its
    budget-``--budget`` policy (each step's variables modelled independently given the known
    ones, as ``ARDM.exact_nll_bpd`` walks them). Only each step's variables get a pmf, as
    in the coder. The float number is checked against ``exact_nll_bpd``. Also the mean KL
    (bits per sub-pixel) from the float model's distribution to the integer pmf computed from
    the *same* integer parameters (the pmf's own cost, apart from the network's).
(b) Speed: one call on one thread, median of ``--repeats`` calls, for one item and per item
    of a batch of 16: the float32 U-Net, the integer U-Net (time terms kept), and each with
    the pmf of one step's variables (``D / budget`` per item; float: the dmol table, as the
    coder computes it today; integer: ``mixture_pmf``).

The integer U-Net is frozen from the float one with ranges calibrated on ``--calib`` training
items (never the test items). Writes ``benchmarks/results/portable_cifar.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ardm
from ardm.core.dmol import dmol_log_prob, dmol_log_probs_range
from ardm.core.objective import LN2
from ardm.core.orders import order_from_seed
from ardm.core.policy import step_bounds
from ardm.data.items import model_items
from ardm.portable import IntegerUNet, pmf_nll_bits
from ardm.portable.pmf import mixture_pmf
from benchmarks.machine import median_ms, write_results


def nll_bits(
    m: ardm.ARDM, inet: IntegerUNet, x: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-item NLL in bits ``(N,)`` of the float and the integer model under the policy, and
    the mean KL (bits per variable) of the integer pmf from the float dmol on the same
    integer parameters."""
    D, shape, K = m.D, m.shape, m.K
    sigma = order_from_seed(D, m.order_seed)  # (D,)
    steps = step_bounds(m.policy_for_budget(budget), D)
    float_bits = torch.zeros(x.shape[0], dtype=torch.float64)
    int_bits = torch.zeros(x.shape[0], dtype=torch.float64)
    kl, count = 0.0, 0
    scale = 2.0**-inet.out_frac_bits
    for left, right in steps:
        known = (sigma < left).view(1, *shape).expand(x.shape[0], *shape)  # (N, *shape)
        step = ((sigma >= left) & (sigma < right)).view(1, *shape).expand_as(known)
        t = torch.full((x.shape[0],), left)
        with torch.no_grad():
            params = m.params(x, known, t)  # (N, *shape, 3M)
        lp = dmol_log_prob(params, x, K).double()  # (N, *shape)
        float_bits -= (lp * step).flatten(1).sum(1) / LN2
        rows = inet.logits(x, known, t)[step]  # (n, 3M) int64, n = N * step size
        w = mixture_pmf(rows, K)  # (n, K)
        bits = torch.zeros(x.shape, dtype=torch.float64)
        bits[step] = pmf_nll_bits(w, x[step])
        int_bits += bits.flatten(1).sum(1)
        p = dmol_log_probs_range(rows.double() * scale, 0, K, K).double().exp()  # (n, K)
        p = p / p.sum(-1, keepdim=True)
        q = (w.double() + 1) / 2**24
        kl += float((p * (p.clamp_min(1e-300).log() - q.log())).sum()) / LN2
        count += rows.shape[0]
    return float_bits, int_bits, kl / count


def call_ms(
    m: ardm.ARDM, inet: IntegerUNet, x: torch.Tensor, B: int, budget: int, repeats: int
) -> dict[str, float]:
    """Per-item ms of one call at batch ``B``: the float32 and integer networks, alone and
    with the pmf of one step's ``D / budget`` variables per item."""
    D, K = m.D, m.K
    xb = x[:1].expand(B, *m.shape).contiguous()
    tb = torch.full((B,), D // 2)
    sigma = order_from_seed(D, m.order_seed)
    known = (sigma < D // 2).view(1, *m.shape).expand_as(xb)
    step = ((sigma >= D // 2) & (sigma < D // 2 + D // budget)).view(1, *m.shape).expand_as(xb)

    def float_step() -> object:
        with torch.no_grad():
            return dmol_log_probs_range(m.params(xb, known, tb)[step], 0, K, K)

    def int_step() -> object:
        return mixture_pmf(inet.logits(xb, known, tb)[step], K)

    with torch.no_grad():
        float_ms = median_ms(lambda: m.net(xb, known, tb), repeats)
    times = {
        "float32": float_ms,
        "integer": median_ms(lambda: inet.logits(xb, known, tb), repeats),
        "float32_and_step_table": median_ms(float_step, repeats),
        "integer_and_step_pmf": median_ms(int_step, repeats),
    }
    return {k: v / B for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    m = ardm.load("cifar10-subset")
    net = m.net.eval()
    t0 = time.perf_counter()
    calib = model_items(m, "train", args.calib)
    inet = IntegerUNet.from_float(net, calib, passes=4, head_bias=m.head.bias)  # type: ignore[arg-type]
    freeze_s = time.perf_counter() - t0
    x = model_items(m, "test", args.items)
    fb, ib, kl = nll_bits(m, inet, x, args.budget)
    n = m.D * len(x)
    float_bpd, int_bpd = float(fb.sum()) / n, float(ib.sum()) / n
    check = float(m.exact_nll_bpd(x, policy=m.policy_for_budget(args.budget)).mean())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    speed = {B: call_ms(m, inet, x, B, args.budget, args.repeats) for B in (1, 16)}
    torch.set_num_threads(threads)
    one = speed[1]
    payload = {
        "items": args.items,
        "budget": args.budget,
        "calibration_items": args.calib,
        "freeze_seconds": round(freeze_s, 2),
        "float_bpd": round(float_bpd, 5),
        "float_bpd_exact_nll_bpd": round(check, 5),
        "integer_bpd": round(int_bpd, 5),
        "rate_cost_percent": round(100 * (int_bpd / float_bpd - 1), 3),
        "pmf_kl_bits_per_subpixel": kl,
        "per_item_ms": {
            f"batch_{B}": {k: round(v, 2) for k, v in s.items()} for B, s in speed.items()
        },
        "call_ratio": round(one["integer"] / one["float32"], 2),
        "step_ratio": round(one["integer_and_step_pmf"] / one["float32_and_step_table"], 2),
        "targets": {"rate_cost_percent": 1.0},
    }
    s16 = speed[16]
    table = "\n".join(
        [
            f"cifar10-subset, first {args.items} test items, budget {args.budget}, model coding "
            "order; per-item ms on 1 thread (batch 1 / per item at batch 16)",
            "",
            "| path | bpd | rate cost | net call | net + one step's pmf |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| float32 (today) | {float_bpd:.4f} | | {one['float32']:.1f} / "
            f"{s16['float32']:.1f} ms | {one['float32_and_step_table']:.1f} / "
            f"{s16['float32_and_step_table']:.1f} ms |",
            f"| integer (portable) | {int_bpd:.4f} | {payload['rate_cost_percent']:+.2f} % | "
            f"{one['integer']:.1f} / {s16['integer']:.1f} ms | "
            f"{one['integer_and_step_pmf']:.1f} / {s16['integer_and_step_pmf']:.1f} ms |",
            "",
            f"Float bpd from `exact_nll_bpd`: {check:.4f}. The integer pmf's own cost (KL from "
            f"the float dmol on the same integer parameters): {kl:.2e} bits per sub-pixel. "
            "Target: rate cost <= 1 %.",
        ]
    )
    write_results("portable_cifar", payload, table)


if __name__ == "__main__":
    main()
