"""MobileNet3-MT network sizes against menas.txt (nasforge issue 16, "MENAS network widths").

The paper reports 16.9 +- 3.0 M parameters for the networks random search selects and 13.6 M for MENAS's (Table 4;
Table 2: 1.5 G multiply-adds), both under the 1~1.6 G multiply-add budget of "Comparison with Random Search". This
script measures, with :class:`nasforge.cost.AnalyticCost` at 224x224 and 1000 classes (no network is built):

* ``anchors``: MobileNetV3-Large written in the space (its first 16-channel block aside; the expansions of Howard et
  al. Table 1 as expand x keep-rate), against the 5.4 M / 219 M multiply-adds of MobileNetV3 [17]: the space's base
  channels, stem and tail are MobileNetV3-Large's; and Table 3's head arithmetic (13.6 M -> 12.5 M when the 1000-way
  classifier becomes a 10 / 100-way one);
* ``reachable``: two architectures inside the FLOPs window, one at MENAS's 13.6 M / 1.5 G, one above the random-search
  winners' 16.9 + 3.0 M;
* ``random``: the parameters of uniformly sampled networks (``space.sample``, MENAS step 1) that fall inside the
  window ``configs/menas.yaml`` uses (2.0e9..3.2e9 FLOPs = 1..1.6 G multiply-adds), by number of down-sampling
  stages, and the largest of 200 in-window draws (random search's N = 200, Table 4), resampled; also for base
  channels doubled, the calibration the issue asks about, for comparison.

    python benchmarks/menas_widths.py [--n 1000] [--seed 0]     # ~3 min on one core; -> results/menas_widths.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from nasforge.cost import AnalyticCost
from nasforge.registry import get_space
from nasforge.spaces.mobilenet import BASE_CHANNELS, HEAD_FEATURE_CH

OUT = Path(__file__).resolve().parent / "results" / "menas_widths.json"
WINDOW = (2.0e9, 3.2e9)  # configs/menas.yaml: 1 ~ 1.6 G multiply-adds, 2 FLOPs each
#: MobileNetV3-Large (Howard et al. 2019, Table 1) after its first block: expansions 64/16, 72/24; 72/24 x3 (k5, SE);
#: 240/40, 200/80, 184/80 x2; 480/80, 672/112 (SE); 672/112, 960/160 x2 (k5, SE) as expand ratio x keep-rate.
MOBILENETV3_LARGE = ("r2_s2_w1,k3_e4_se0_p1,k3_e3_se0_p1-r3_s2_w1,k5_e3_se1_p1,k5_e3_se1_p1,k5_e3_se1_p1-"
                     "r4_s2_w1,k3_e6_se0_p1,k3_e3_se0_p0.85,k3_e3_se0_p0.775,k3_e3_se0_p0.775-"
                     "r2_s1_w1,k3_e6_se1_p1,k3_e6_se1_p1-r3_s2_w1,k5_e6_se1_p1,k5_e6_se1_p1,k5_e6_se1_p1")
#: found by a hill climb towards (13.6 M, 1.5 G multiply-adds): Table 2's MENAS point
AT_MENAS = ("r3_s2_w2,k7_e6_se1_p1,k7_e6_se1_p1,k7_e6_se1_p0.85-r2_s1_w1,k5_e6_se1_p1,k5_e4_se1_p1-"
            "r2_s2_w1,k3_e6_se1_p1,k5_e3_se1_p0.75-r2_s2_w1.5,k5_e6_se1_p1,k7_e6_se1_p1-"
            "r4_s1_w2,k5_e6_se1_p1,k5_e6_se1_p1,k5_e6_se1_p0.725,k5_e6_se1_p1")
#: a wide, deep last stage at 7x7 (four down-sampling stages) and a heavy first stage to reach the window
ABOVE_RANDOM = ("r6_s2_w2" + ",k7_e6_se0_p1" * 6 + "-r1_s2_w0.5,k3_e1_se0-r1_s2_w0.5,k3_e1_se0-"
                "r2_s2_w2,k3_e6_se1_p1,k3_e6_se1_p1-r6_s1_w2" + ",k3_e6_se1_p1" * 6)


def _cost(space, text: str) -> dict[str, float]:
    c = AnalyticCost(space, (3, 224, 224), 1000).cost(space.parse(text))
    return {"params_M": c["params"] / 1e6, "gmac": c["flops"] / 2e9}


def _random(space, n: int, seed: int) -> dict:
    cost, rng = AnalyticCost(space, (3, 224, 224), 1000), np.random.default_rng(seed)
    params, downs, drawn = [], [], 0
    while len(params) < n:
        arch, drawn = space.sample(rng), drawn + 1
        c = cost.cost(arch)
        if WINDOW[0] <= c["flops"] <= WINDOW[1]:
            params.append(c["params"] / 1e6)
            downs.append(sum(bool(arch[f"s{s}.down"]) for s in range(1, space.n_stages + 1)))
    p, d = np.array(params), np.array(downs)
    best200 = np.array([rng.choice(p, 200).max() for _ in range(2000)])
    return {"in_window": n, "drawn": drawn, "share_in_window": n / drawn,
            "params_M": {"mean": p.mean(), "std": p.std(), "p5": np.percentile(p, 5), "p50": np.median(p),
                         "p95": np.percentile(p, 95), "max": p.max(), "share_ge_13.9": float(np.mean(p >= 13.9))},
            "max_of_200_M": {"mean": best200.mean(), "std": best200.std()},
            "by_downsampling_stages": {int(k): {"n": int((d == k).sum()), "mean": p[d == k].mean()}
                                       for k in sorted(set(d.tolist()))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="in-window random networks per space (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    space = get_space("menas-mt")
    doubled = get_space("menas-mt", base_channels=tuple(2 * c for c in BASE_CHANNELS))
    # Table 3: the 1000-way classifier on HEAD_FEATURE_CH features replaced by a 100- / 10-way one
    head = {"table3_drop_M": 13.6 - 12.5, "drop_1000_to_100_M": HEAD_FEATURE_CH * 900 / 1e6,
            "drop_1000_to_10_M": HEAD_FEATURE_CH * 990 / 1e6,
            # 13.6 and 12.5 are rounded to 0.1 M, so the drop is 1.0..1.2 M: features = drop / (1000 - classes)
            "features_implied_100": [round(1.0e6 / 900), round(1.2e6 / 900)],
            "features_implied_10": [round(1.0e6 / 990), round(1.2e6 / 990)]}
    out = {"window_flops": WINDOW, "base_channels": BASE_CHANNELS, "head_features": HEAD_FEATURE_CH,
           "anchors": {"mobilenetv3_large": _cost(space, MOBILENETV3_LARGE), "paper_mobilenetv3": [5.4, 0.219],
                       "table3_head": head},
           "reachable": {"at_menas_13.6M_1.5G": _cost(space, AT_MENAS), "above_random_19.9M": _cost(space, ABOVE_RANDOM)},
           "random": {"menas-mt": _random(space, args.n, args.seed),
                      "base_channels_x2": _random(doubled, args.n, args.seed)},
           "paper": {"random_search_selected_M": [16.9, 3.0], "menas_M": 13.6, "menas_gmac": 1.5},
           "cpu_s": None}
    out["cpu_s"] = time.process_time() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(json.dumps(out, indent=1, default=lambda x: round(float(x), 3)))


if __name__ == "__main__":
    main()
