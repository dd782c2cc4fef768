"""Generated from ``proto/slocast.proto`` by ``make proto`` (grpcio-tools). Do not edit."""
