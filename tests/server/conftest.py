"""The served-process layer: ``attnlab serve`` as a separate process on loopback, as ``make run`` starts it."""
