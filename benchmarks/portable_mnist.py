"""Rate and speed of the integer (portable) MNIST U-Net next to the float one.

    PYTHONPATH=src python -m benchmarks.portable_mnist [--items 20] [--budget 20]

(a) Rate: on the first ``--items`` MNIST test items, the exact NLL (bits per dim) of the
    integer pmf (``(w + 1) / 2^24``, what the coder would use) and of the float model's
    log-probabilities, under the model's coding order and its budget-``--budget`` policy
    (each step's variables modelled independently given the known ones, as
    ``ARDM.exact_nll_bpd`` walks them). The float number is checked against
    ``exact_nll_bpd``.
(b) Speed: one network call on one thread, median of ``--repeats`` calls, for one item and
    per item of a batch of 16: the float32 U-Net, the integer U-Net's logits (its time
    terms kept from an earlier call at the same ``t``, as a coder's later items find them,
    and recomputed), and logits plus the integer pmf.

The integer U-Net is frozen from the float one with ranges calibrated on ``--calib`` training
items (never the test items). Writes ``benchmarks/results/portable_mnist.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ardm
from ardm.core.objective import LN2
from ardm.core.orders import order_from_seed
from ardm.core.policy import step_bounds
from ardm.data.items import model_items
from ardm.portable import IntegerUNet, pmf_nll_bits
from benchmarks.machine import median_ms, write_results


def nll_bits(
    m: ardm.ARDM, inet: IntegerUNet, x: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item NLL in bits ``(N,)`` of the float and the integer model under the policy."""
    D, shape = m.D, m.shape
    sigma = order_from_seed(D, m.order_seed)  # (D,)
    steps = step_bounds(m.policy_for_budget(budget), D)
    float_bits = torch.zeros(x.shape[0], dtype=torch.float64)
    int_bits = torch.zeros(x.shape[0], dtype=torch.float64)
    for left, right in steps:
        known = (sigma < left).view(1, *shape).expand(x.shape[0], *shape)  # (N, *shape)
        step = ((sigma >= left) & (sigma < right)).view(1, *shape).expand_as(known)
        t = torch.full((x.shape[0],), left)
        with torch.no_grad():
            lp = m.log_probs(x, known, t).double()  # (N, *shape, K)
        chosen = lp.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (N, *shape)
        float_bits -= (chosen * step).flatten(1).sum(1) / LN2
        w = inet.pmf(x, known, t)  # (N, *shape, K)
        int_bits += (pmf_nll_bits(w, x) * step).flatten(1).sum(1)
    return float_bits, int_bits


def call_ms(
    m: ardm.ARDM, inet: IntegerUNet, x: torch.Tensor, B: int, repeats: int
) -> tuple[float, float, float, float]:
    """Per-item ms of one call at batch ``B``: float32, integer logits (time terms kept and
    recomputed), integer logits and pmf."""
    D = m.D
    xb = x[:1].expand(B, *m.shape).contiguous()
    tb = torch.full((B,), D // 2)
    known = (order_from_seed(D, m.order_seed) < D // 2).view(1, *m.shape).expand_as(xb)
    with torch.no_grad():
        float_ms = median_ms(lambda: m.net(xb, known, tb), repeats)
    int_ms = median_ms(lambda: inet.logits(xb, known, tb), repeats)

    def fresh() -> object:
        inet._time_cache.clear()
        return inet.logits(xb, known, tb)

    fresh_ms = median_ms(fresh, repeats)
    pmf_ms = median_ms(lambda: inet.pmf(xb, known, tb), repeats)
    return float_ms / B, int_ms / B, fresh_ms / B, pmf_ms / B


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    m = ardm.load("mnist")
    net = m.net.eval()
    t0 = time.perf_counter()
    inet = IntegerUNet.from_float(net, model_items(m, "train", args.calib), passes=4)
    freeze_s = time.perf_counter() - t0
    x = model_items(m, "test", args.items)
    fb, ib = nll_bits(m, inet, x, args.budget)
    D = m.D
    float_bpd, int_bpd = float(fb.sum()) / (D * len(x)), float(ib.sum()) / (D * len(x))
    check = float(m.exact_nll_bpd(x, policy=m.policy_for_budget(args.budget)).mean())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    speed = {B: call_ms(m, inet, x, B, args.repeats) for B in (1, 16)}
    torch.set_num_threads(threads)
    float_ms, int_ms, int_fresh_ms, pmf_ms = speed[1]

    payload = {
        "items": args.items,
        "budget": args.budget,
        "calibration_items": args.calib,
        "freeze_seconds": round(freeze_s, 2),
        "float_bpd": round(float_bpd, 5),
        "float_bpd_exact_nll_bpd": round(check, 5),
        "integer_bpd": round(int_bpd, 5),
        "rate_cost_percent": round(100 * (int_bpd / float_bpd - 1), 3),
        "per_item_ms": {
            f"batch_{B}": {
                "float32": round(v[0], 2),
                "integer_logits": round(v[1], 2),
                "integer_logits_time_recomputed": round(v[2], 2),
                "integer_logits_and_pmf": round(v[3], 2),
                "ratio": round(v[1] / v[0], 2),
            }
            for B, v in speed.items()
        },
        "call_ratio": round(int_ms / float_ms, 2),
        "targets": {"rate_cost_percent": 1.0, "call_ratio": 1.5},
    }
    table = "\n".join(
        [
            f"MNIST, first {args.items} test items, budget {args.budget}, model coding order",
            "",
            "| path | bpd | rate cost | one call, 1 item, 1 thread | per item at batch 16 |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| float32 (today) | {float_bpd:.4f} | | {float_ms:.1f} ms | {speed[16][0]:.1f} ms |",
            f"| integer (portable) | {int_bpd:.4f} | {payload['rate_cost_percent']:+.2f} % | "
            f"{int_ms:.1f} ms ({int_ms / float_ms:.2f}x) | {speed[16][1]:.1f} ms "
            f"({speed[16][1] / speed[16][0]:.2f}x) |",
            "",
            f"Integer call with its time terms recomputed: {int_fresh_ms:.1f} ms; with the pmf: "
            f"{pmf_ms:.1f} ms (batch 1).",
            "",
            f"Float bpd from `exact_nll_bpd`: {check:.4f}. Targets: rate cost <= 1 %, "
            "integer call <= 1.5x the float32 call.",
        ]
    )
    write_results("portable_mnist", payload, table)


if __name__ == "__main__":
    main()
