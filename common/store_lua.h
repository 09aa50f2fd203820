/* store_lua.h -- the Lua scripts the Redis backend runs (store_redis_cmd.c),
 * one per operation that touches more than one key, so each is atomic.
 * Every script names its keys in KEYS and they all share the queue's hash
 * tag, so in Redis Cluster each runs on one slot. docs/redis.md lists
 * them; keep the two in step.
 *
 * Members are job ids in 32 lowercase hex digits (their order is the ids'
 * byte order); scores are wall ms; values are encoded JobRecords. Lua's
 * unpack() takes at most ~8000 values, so ids go to ZREM/HMGET/HDEL in
 * chunks of 500. */
#ifndef SLUICE_STORE_LUA_H
#define SLUICE_STORE_LUA_H

/* Shared helpers, prepended to the scripts that need them. */
#define S_LUA_CHUNKS                                                                   \
    "local function each_chunk(ids, step, fn)\n"                                       \
    "  for i = 1, #ids, step do\n"                                                     \
    "    fn({unpack(ids, i, math.min(i + step - 1, #ids))})\n"                         \
    "  end\n"                                                                          \
    "end\n"

/* PUT: KEYS zset, hash; ARGV (member, score, record) triples. Adds or
 * replaces each. RETRY_PUT, and jobs a late-answered TAKE removed. */
#define S_LUA_PUT                                                                      \
    "for i = 1, #ARGV, 3 do\n"                                                         \
    "  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])\n"                            \
    "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])\n"                            \
    "end\n"                                                                            \
    "return #ARGV / 3\n"

/* TAKE: KEYS zset, hash; ARGV upper score bound (ZRANGEBYSCORE syntax:
 * "123", "(123" or "+inf"), max. Removes up to max members, lowest score
 * first, and returns {more, member, score, record, ...}; a member whose
 * record is missing is removed and not returned. RETRY_TAKE, DEAD_TAKE. */
#define S_LUA_TAKE                                                                     \
    S_LUA_CHUNKS                                                                       \
    "local max = tonumber(ARGV[2])\n"                                                  \
    "local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES',\n" \
    "                         'LIMIT', 0, max + 1)\n"                                  \
    "local more = 0\n"                                                                 \
    "if #found > 2 * max then\n"                                                       \
    "  more = 1\n"                                                                     \
    "  found[#found] = nil\n"                                                          \
    "  found[#found] = nil\n"                                                          \
    "end\n"                                                                            \
    "local ids, score = {}, {}\n"                                                      \
    "for i = 1, #found, 2 do\n"                                                        \
    "  ids[#ids + 1] = found[i]\n"                                                     \
    "  score[found[i]] = found[i + 1]\n"                                               \
    "end\n"                                                                            \
    "local out = {more}\n"                                                             \
    "each_chunk(ids, 500, function(chunk)\n"                                           \
    "  local recs = redis.call('HMGET', KEYS[2], unpack(chunk))\n"                     \
    "  redis.call('ZREM', KEYS[1], unpack(chunk))\n"                                   \
    "  redis.call('HDEL', KEYS[2], unpack(chunk))\n"                                   \
    "  for j = 1, #chunk do\n"                                                         \
    "    if recs[j] then\n"                                                            \
    "      out[#out + 1] = chunk[j]\n"                                                 \
    "      out[#out + 1] = score[chunk[j]]\n"                                          \
    "      out[#out + 1] = recs[j]\n"                                                  \
    "    end\n"                                                                        \
    "  end\n"                                                                          \
    "end)\n"                                                                           \
    "return out\n"

/* TAKE_ONE: KEYS zset, hash; ARGV member. Removes it; returns {0, member,
 * score, record} or {0}. DEAD_TAKE of one id. */
#define S_LUA_TAKE_ONE                                                                 \
    "local score = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"                           \
    "local rec = redis.call('HGET', KEYS[2], ARGV[1])\n"                               \
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"                                           \
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"                                           \
    "if score and rec then return {0, ARGV[1], score, rec} end\n"                      \
    "return {0}\n"

/* DEAD_PUT: KEYS dead zset, dead hash; ARGV member, dead ms, record,
 * max_dead, oldest ms kept ("" = no age bound). Adds, drops those dead
 * before the oldest kept, then the oldest beyond max_dead; returns how
 * many it dropped. */
#define S_LUA_DEAD_PUT                                                                 \
    S_LUA_CHUNKS                                                                       \
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"                                  \
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])\n"                                  \
    "local trimmed = 0\n"                                                              \
    "local function drop(ids)\n"                                                       \
    "  each_chunk(ids, 500, function(chunk)\n"                                         \
    "    redis.call('ZREM', KEYS[1], unpack(chunk))\n"                                 \
    "    redis.call('HDEL', KEYS[2], unpack(chunk))\n"                                 \
    "  end)\n"                                                                         \
    "  trimmed = trimmed + #ids\n"                                                     \
    "end\n"                                                                            \
    "if ARGV[5] ~= '' then\n"                                                          \
    "  drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[5]))\n"           \
    "end\n"                                                                            \
    "local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])\n"                  \
    "if over > 0 then\n"                                                               \
    "  drop(redis.call('ZRANGE', KEYS[1], 0, over - 1))\n"                             \
    "end\n"                                                                            \
    "return trimmed\n"

/* DEAD_LIST: KEYS dead zset, dead hash; ARGV after ms, after member, max.
 * Returns {more, record, ...}: the records strictly after (after ms, after
 * member), oldest first. Members tied on the after score are found by a
 * binary search over ranks, so a page costs O(log n) however many died in
 * the same millisecond. Byte comparison by hand: Lua's `<` on strings
 * follows the server's collation locale. */
#define S_LUA_DEAD_LIST                                                                \
    "local key, s, m, max = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])\n"            \
    "local function gt(a, b)\n"                                                        \
    "  for i = 1, math.min(#a, #b) do\n"                                               \
    "    local x, y = a:byte(i), b:byte(i)\n"                                          \
    "    if x ~= y then return x > y end\n"                                            \
    "  end\n"                                                                          \
    "  return #a > #b\n"                                                               \
    "end\n"                                                                            \
    "local lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)\n"                         \
    "local hi = redis.call('ZCOUNT', key, '-inf', s)\n"                                \
    "while lo < hi do\n"                                                               \
    "  local mid = math.floor((lo + hi) / 2)\n"                                        \
    "  if gt(redis.call('ZRANGE', key, mid, mid)[1], m) then hi = mid else lo = mid + 1 end\n" \
    "end\n"                                                                            \
    "local ids = redis.call('ZRANGE', key, lo, lo + max)\n"                            \
    "local more = 0\n"                                                                 \
    "if #ids > max then\n"                                                             \
    "  more = 1\n"                                                                     \
    "  ids[#ids] = nil\n"                                                              \
    "end\n"                                                                            \
    "local out = {more}\n"                                                             \
    "for i = 1, #ids, 500 do\n"                                                        \
    "  local recs = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 499, #ids)))\n" \
    "  for j = 1, #recs do\n"                                                          \
    "    if recs[j] then out[#out + 1] = recs[j] end\n"                                \
    "  end\n"                                                                          \
    "end\n"                                                                            \
    "return out\n"

/* COUNT: KEYS retry zset, dead zset. Returns {retries, dead}. */
#define S_LUA_COUNT "return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}\n"

#endif
