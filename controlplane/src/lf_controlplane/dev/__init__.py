"""`lf dev`: the whole data plane on one machine, from function folders on disk."""
