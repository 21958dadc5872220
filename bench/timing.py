"""Median timing of a callable in milliseconds (CUDA events on the GPU, perf_counter on the
CPU), shared by the benchmark scripts."""
import statistics
import time


def median_ms(fn, runs: int, cuda: bool = False, warmup: int = 3) -> float:
    """Run ``fn`` ``warmup`` times, then ``runs`` timed times; return the median in ms."""
    import torch
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    out = []
    for _ in range(runs):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)
