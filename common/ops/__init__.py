"""Operations code both daemons share (process supervision, deployment TOML, PKI): not part of the Flower app bundle."""
