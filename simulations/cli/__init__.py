"""The `medfed` command: one root app that imports each sub-app explicitly."""
