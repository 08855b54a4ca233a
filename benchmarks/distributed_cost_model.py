#!/usr/bin/env python3
"""Cost model of kitnn's data-parallel training over MPI (docs/distributed.md).

    benchmarks/distributed_cost_model.py --ips kerascnn=1900,best=700 --bytes kerascnn=4.8e6,best=0.70e6

For P machines of the kind measured (--ips: images/s of ONE machine, one process with
all its cores; --bytes: the flat gradient buffer of one step), a step is its compute
plus its gradient reduction, one after the other (kitnn does not overlap them):

  compute    t_c = b / ips                            b: images per machine per step
  ring       t_r = 2 (P-1)/P * S / BW + 2 (P-1) * a   (MPI_Allreduce's ring algorithm)
  sharded    t_s = 2 (P-1)/P * S / BW + 3 (P-1) * a + S / M
                                                       (kitnn's sharded update: an alltoall
                                                       brings each rank the P-1 other
                                                       ranks' gradients of its shard, it
                                                       adds them in rank order (M = memory
                                                       speed), an allgather spreads the
                                                       shards' new weights; a ring's bytes,
                                                       one more latency for the guard)
  allgather  t_g = (P-1) * S / BW + (P-1) * a + (P-1) * S / M
                                                       (kitnn before the sharded update, and
                                                       still for optimizers that cannot
                                                       shard: every rank receives all P-1
                                                       other buffers and adds them itself)
  images/s   = P * b / (t_c + t_comm),  efficiency = t_c / (t_c + t_comm)

Two ways to use P machines:
  weak   b = 100 images per machine, global batch 100 P (learning rate scaled, warm-up)
  strong global batch 100, b = 100 / P (the same training as one machine; parts shrink,
         and small parts run below a machine's speed: the model's t_c is optimistic)
Assumptions (printed): BW = 10 or 100 Gbit/s at 90 % goodput, a = per-message latency
(25 us on 10 GbE TCP, 10 us on 100 GbE), M = 5 GB/s for the adds.
"""
import argparse


def parse_pairs(text):
    out = {}
    for kv in text.split(","):
        k, v = kv.split("=")
        out[k] = float(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ips", required=True, help="model=images/s of one machine, comma-separated")
    ap.add_argument("--bytes", required=True, help="model=gradient bytes per step, comma-separated")
    ap.add_argument("--machines", default="1,2,4,8,16,32,64")
    ap.add_argument("--mem-gbs", type=float, default=5.0)
    args = ap.parse_args()
    ips, size = parse_pairs(args.ips), parse_pairs(args.bytes)
    machines = [int(p) for p in args.machines.split(",")]
    nets = {"10 Gbit/s": (10e9 / 8 * 0.9, 25e-6), "100 Gbit/s": (100e9 / 8 * 0.9, 10e-6)}
    print(f"assumptions: goodput 90 % of the line rate; latency 25 us (10 GbE) / 10 us (100 GbE); "
          f"adds at {args.mem_gbs} GB/s")
    for model in ips:
        S = size[model]
        for net, (bw, lat) in nets.items():
            for mode in ("weak", "strong"):
                print(f"\n{model}, {net}, {mode} scaling ({'100 images per machine' if mode == 'weak' else 'global batch 100'})")
                print("| machines | step ms (compute + ring / sharded / allgather) | images/s ring | eff. ring "
                      "| images/s kitnn sharded | eff. sharded | images/s allgather | eff. allgather |")
                print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for P in machines:
                    b = 100.0 if mode == "weak" else 100.0 / P
                    tc = b / ips[model]
                    tr = 0.0 if P == 1 else 2 * (P - 1) / P * S / bw + 2 * (P - 1) * lat
                    ts = 0.0 if P == 1 else 2 * (P - 1) / P * S / bw + 3 * (P - 1) * lat + S / (args.mem_gbs * 1e9)
                    tg = 0.0 if P == 1 else (P - 1) * S / bw + (P - 1) * lat + (P - 1) * S / (args.mem_gbs * 1e9)
                    print(f"| {P} | {1e3 * tc:.1f} + {1e3 * tr:.1f} / {1e3 * ts:.1f} / {1e3 * tg:.1f} | "
                          f"{P * b / (tc + tr):,.0f} | {tc / (tc + tr):.0%} | {P * b / (tc + ts):,.0f} | "
                          f"{tc / (tc + ts):.0%} | {P * b / (tc + tg):,.0f} | {tc / (tc + tg):.0%} |")


if __name__ == "__main__":
    main()
