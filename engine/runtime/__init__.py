"""The runtime: workers that run sessions' turns. ``schedule`` keeps the work list (a
projection) and the leases, ``state`` folds a session's log, ``turns`` decides and performs the
next step, ``adapters`` talk to models, ``worker`` claims sessions and runs them."""
