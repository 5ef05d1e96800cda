"""`hwclf bench`: how close training runs to this machine's limit, what the sweep costs around the
training, how much faster hwclf is than the original study's way, and how much sooner its fast recipe
reaches the original's accuracy. See docs/performance.md.

One module per part, measured in one run on the machine it runs on (`main`: the entry point, sizes and
order; `markdown`: the tables of the JSON; `machine`: what the machine is and whether it was idle):

1. ``matmul`` (`peaks`): the machine limit, float32 and bfloat16 GFLOP/s of a large `keras.ops.matmul`.
2. ``models`` (`training`): training images/s and MFU per architecture; `basic`'s FLOPs cross-checked.
3. ``blur`` (`blur`): images/s of the vectorised blur and of the original per-image loop.
4. ``sweep`` (`overhead`): a real Ray Tune sweep against the training time inside its trials.
5. ``naive`` (`naive`): the original study's way against `run_trial` and the sweep, same trials.
6. ``pack`` (`pack`): N trials side by side, N = 1, 2, 4, ...: where aggregate throughput stops growing.
7. ``tta`` (`tta`, only with ``--parts``): time to accuracy, the original protocol against the fast recipe.

``--quick`` runs everything at tiny sizes (seconds) to check that the code runs; its numbers mean nothing.
Nothing is imported here: ``python -m hwclf.bench.pack`` (the pack worker) starts light.
"""
