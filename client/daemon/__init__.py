"""The hospital daemon (`medfed client start|status`): operations code, not part of the Flower app bundle."""
