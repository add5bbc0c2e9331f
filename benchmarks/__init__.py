"""``make bench``: what khaime-django costs per checkout, per webhook and at scale (issue 5).

``python -m benchmarks`` runs every measurement in one process run and writes
``benchmarks/RESULTS.md``; ``--quick`` is a smoke run with small sizes. One module per
measurement; ``naive/`` is the hand-written integration the checkout is compared with.

Nothing here imports Django at import time: the emulator and worker processes import this
package too.
"""
