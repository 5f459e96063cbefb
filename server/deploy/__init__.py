"""Running a real federation (`medfed server start|run`): operations code, not part of the Flower app bundle."""
