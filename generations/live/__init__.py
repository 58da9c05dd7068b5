"""Live push: with Redis, every committed change to a card is published to its team's stream (`stream`), and open
studio pages receive the changed cards as server-sent events (`views.studio_events`, served under ASGI). Without
Redis nothing here runs and the studio page keeps its pulse (views/studio.py)."""
