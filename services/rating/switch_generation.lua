-- Switch reads and writes to the rebuilt generation, if it is still the one named next
-- (services/rating/rebuild.py). KEYS[1]: the generations pointer hash. ARGV: the active
-- field, the next field, the rebuilt generation's prefix. Returns 1 if switched, 0 if another
-- rebuild replaced it as next.
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
