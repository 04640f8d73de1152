--! uses: fraud_window, fraud_segments
-- Give back a send that did not happen, in every segment it was counted in
-- (fraud_give_back in pieces/fraud_segments.lua). KEYS: counts, state of each segment, in
-- pairs, the address first (one {fraud} hash tag). ARGV: the bucket the send was counted
-- in, 1 if it was served on the address's conversion credit. Never creates a key.
fraud_give_back(KEYS, ARGV[1], ARGV[2] == '1')
return 0
