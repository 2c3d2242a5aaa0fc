"""Projections: views folded from the log by position, each exactly once (rows and checkpoint in
one transaction), one active runner per projection across processes."""
