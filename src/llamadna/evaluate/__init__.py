"""Evaluation of generated annotations.

`predict` keeps every system's predictions beside the truth; `metrics` scores them (field by
field through `data.template.parse_annotation`, which reads a generated sentence back into its
fields); `baselines` and `divergence` supply the alternatives and the mutated inputs; `run`
puts them together for `llamadna evaluate`; `report` renders the result.
"""
