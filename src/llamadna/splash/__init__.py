"""SPLASH: reference-free detection of sample-dependent target usage after anchor k-mers.

`kmers` counts (anchor, target, sample) from reads; `stats` holds the statistics (OASIS p-value,
pval_opt, effect size, target entropy, Benjamini-Yekutieli); `run` is the pipeline that reads the
samples and writes the anchors table (`run.run_splash`). The math is in SPLASH_SPEC.md.
"""
