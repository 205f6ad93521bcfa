"""One customer: profiles, the identity graph, merges, consent and the customer 360."""
