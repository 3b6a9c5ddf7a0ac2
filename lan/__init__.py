"""The host's own network: which addresses it has and whether each is up, and noticing
at once when that changes. Shared by the station (where it is reachable) and the phone
(where it roams from); it imports nothing else of ours."""
