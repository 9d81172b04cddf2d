-- wrk script of the LiteFunctions bench: sends the configured request and prints one machine-readable line.
-- WRK_METHOD, WRK_BODY_FILE and WRK_HEADERS (a JSON object of header → value) come from the environment.

local function read_file(path)
  if path == nil or path == "" then return nil end
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local data = f:read("*a")
  f:close()
  if data == "" then return nil end
  return data
end

wrk.method = os.getenv("WRK_METHOD") or "GET"
wrk.body = read_file(os.getenv("WRK_BODY_FILE"))
local headers = os.getenv("WRK_HEADERS") or "{}"
for name, value in headers:gmatch('"([^"]+)"%s*:%s*"([^"]*)"') do
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'LF_REPORT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- With WRK_PATHS_FILE (one path a line), every request picks one of them at random.
local paths = {}
local paths_file = os.getenv("WRK_PATHS_FILE")
if paths_file ~= nil and paths_file ~= "" then
  for line in io.lines(paths_file) do
    if line ~= "" then paths[#paths + 1] = line end
  end
end
if #paths > 0 then
  request = function()
    return wrk.format(nil, paths[math.random(#paths)])
  end
end
