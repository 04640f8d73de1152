-- End every session of a user. KEYS: index. ARGV: the prefix of the user's session keys.
-- The session keys are built here from the index, not passed in: read and delete in one
-- step, so a session created meanwhile is either listed (and ended) or created after. They
-- carry the index's {user_id} hash tag, so the script still touches one slot.
local digests = redis.call('HKEYS', KEYS[1])
for _, digest in ipairs(digests) do redis.call('DEL', ARGV[1] .. digest) end
redis.call('DEL', KEYS[1])
return #digests
