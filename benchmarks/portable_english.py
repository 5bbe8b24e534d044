"""Rate and speed of the integer (portable) English Transformer next to the float one.

    PYTHONPATH=src python -m benchmarks.portable_english [--items 20] [--budget 20]

(a) Rate: on the first ``--items`` English test chunks, the exact NLL (bits per character)
    of the integer pmf (``(w + 1) / 2^24``, what the coder would use) and of the float model's
    log-probabilities, under the model's coding order and its budget-``--budget`` policy, as
    in :mod:`benchmarks.portable_mnist` (whose ``nll_bits`` this uses). The float number is
    checked against ``exact_nll_bpd``.
(b) Speed: one network call on one thread, median of ``--repeats`` calls, for one chunk and
    per chunk of a batch of 16: the float32 Transformer, the integer Transformer's logits, and
    logits plus the integer pmf.

The integer Transformer is frozen from the float one with ranges calibrated on ``--calib``
training chunks (never the test chunks). Writes ``benchmarks/results/portable_english.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ardm
from ardm.core.orders import order_from_seed
from ardm.data.items import model_items
from ardm.portable.transformer import IntegerTransformer
from benchmarks.machine import median_ms, write_results
from benchmarks.portable_mnist import nll_bits


def call_ms(
    m: ardm.ARDM, inet: IntegerTransformer, x: torch.Tensor, B: int, repeats: int
) -> tuple[float, float, float]:
    """Per-chunk ms of one call at batch ``B``: float32, integer logits, integer logits and pmf."""
    D = m.D
    xb = x[:1].expand(B, *m.shape).contiguous()
    tb = torch.full((B,), D // 2)
    known = (order_from_seed(D, m.order_seed) < D // 2).view(1, *m.shape).expand_as(xb)
    with torch.no_grad():
        float_ms = median_ms(lambda: m.net(xb, known, tb), repeats)
    int_ms = median_ms(lambda: inet.logits(xb, known, tb), repeats)
    pmf_ms = median_ms(lambda: inet.pmf(xb, known, tb), repeats)
    return float_ms / B, int_ms / B, pmf_ms / B


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args()

    m = ardm.load("english")
    net = m.net.eval()
    t0 = time.perf_counter()
    inet = IntegerTransformer.from_float(net, model_items(m, "train", args.calib), passes=4)
    freeze_s = time.perf_counter() - t0
    x = model_items(m, "test", args.items)
    fb, ib = nll_bits(m, inet, x, args.budget)
    D = m.D
    float_bpc, int_bpc = float(fb.sum()) / (D * len(x)), float(ib.sum()) / (D * len(x))
    check = float(m.exact_nll_bpd(x, policy=m.policy_for_budget(args.budget)).mean())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    speed = {B: call_ms(m, inet, x, B, args.repeats) for B in (1, 16)}
    torch.set_num_threads(threads)
    float_ms, int_ms, pmf_ms = speed[1]

    payload = {
        "items": args.items,
        "budget": args.budget,
        "calibration_items": args.calib,
        "freeze_seconds": round(freeze_s, 2),
        "float_bpc": round(float_bpc, 5),
        "float_bpc_exact_nll_bpd": round(check, 5),
        "integer_bpc": round(int_bpc, 5),
        "rate_cost_percent": round(100 * (int_bpc / float_bpc - 1), 3),
        "per_item_ms": {
            f"batch_{B}": {
                "float32": round(v[0], 3),
                "integer_logits": round(v[1], 3),
                "integer_logits_and_pmf": round(v[2], 3),
                "ratio": round(v[1] / v[0], 2),
            }
            for B, v in speed.items()
        },
        "call_ratio": round(int_ms / float_ms, 2),
        "targets": {"rate_cost_percent": 1.0, "call_ratio": 1.5},
    }
    table = "\n".join(
        [
            f"English, first {args.items} test chunks ({D} characters each), budget "
            f"{args.budget}, model coding order",
            "",
            "| path | bits/char | rate cost | one call, 1 chunk, 1 thread | per chunk at batch 16 |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| float32 (today) | {float_bpc:.4f} | | {float_ms:.2f} ms | {speed[16][0]:.2f} ms |",
            f"| integer (portable) | {int_bpc:.4f} | {payload['rate_cost_percent']:+.2f} % | "
            f"{int_ms:.2f} ms ({int_ms / float_ms:.2f}x) | {speed[16][1]:.2f} ms "
            f"({speed[16][1] / speed[16][0]:.2f}x) |",
            "",
            f"Integer call with the pmf: {pmf_ms:.2f} ms (batch 1), {speed[16][2]:.2f} ms per "
            "chunk at batch 16.",
            "",
            f"Float bits/char from `exact_nll_bpd`: {check:.4f}. Targets: rate cost <= 1 %, "
            "integer call <= 1.5x the float32 call.",
        ]
    )
    write_results("portable_english", payload, table)


if __name__ == "__main__":
    main()
