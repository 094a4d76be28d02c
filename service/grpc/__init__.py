"""The gRPC front door: the Open Inference Protocol (``inference.GRPCInferenceService``) and
``grpc.health.v1.Health``, served with grpc.aio on the HTTP server's event loop.

``inference.proto`` is the protocol as this project writes it; ``inference_pb2*.py(i)`` are
generated from it by ``scripts/generate_grpc_stubs.py`` and checked in. ``server`` binds and
stops, ``servicer`` answers the RPCs on the shared data plane, ``tensors`` converts tensors,
``status`` maps service errors to gRPC codes, ``health`` answers the health service.
"""
