"""The site node: intake of device reports, rules, guard dispatch and the edge runtime."""
