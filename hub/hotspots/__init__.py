"""Hotspots: which grid cells of the district will see incidents in the coming hours.

Pure functions over numpy arrays (`grid`, `methods`, `hawkes`, `evaluate`, `synth`); files and the hub's database
are read in `records`. The command line is `guardlink hotspots` (cli/hotspots.py), the console's map layer
`GET /api/hotspots` (hub/hotspots_api.py).
"""
