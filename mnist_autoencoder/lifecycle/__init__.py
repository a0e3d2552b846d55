"""Which model is in production and where it came from: the registry and lineage.

``registry`` keeps one champion per dataset with every decision about it, and says
what a drift does to a promotion; ``lineage`` finds the parent a retrain on a
grown snapshot starts from.
"""
