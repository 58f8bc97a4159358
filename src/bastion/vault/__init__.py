"""The vault: secrets sealed with envelope encryption under rotatable master keys."""
