"""Evaluation of generated annotations.

`systems` is the table of the systems compared (their runners, training variants and notes);
`predict` keeps every system's predictions beside the truth; `metrics` scores them (field by
field through `data.template.parse_annotation`, which reads a generated sentence back into its
fields) and `scoring` adds the bootstrap intervals; `baselines` and `splash_baseline` supply the
alternatives, `divergence` the curves on mutated inputs, `benchmark` a real cross-species set;
`run` puts them together for `llamadna evaluate` (settings: `config`); `report` renders the
result, whose layout `schema` gives.
"""
