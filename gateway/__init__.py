"""The gateway: routing, health watching, breakers, admission and the OpenAI HTTP shim."""
