"""Transports: REST (aiohttp) and gRPC (sync grpc.server) over the one ServingService."""
