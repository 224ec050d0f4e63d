"""Detection-quality simulation: labelled traffic personas run through a policy.

`personas` generates benign and harvesting traffic (deterministic per seed),
`runner` plays it through the policy chain in-process on a fake clock (or over
HTTP to a running gateway), `report` turns the outcomes into a table, and
`cli` is the `distill-guard simulate` command.
"""
