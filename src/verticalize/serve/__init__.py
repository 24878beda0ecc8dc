"""The HTTP service (S1-S8): `create_app` builds the FastAPI app for a model, `serve` runs it
on uvicorn. Modules: engines (model backends), batching (dynamic batches, bounded queues),
routing (champion / challenger, hot reload), openai_api (OpenAI wire format), app, server;
security, audit, metrics and feedback hold the operations side."""
