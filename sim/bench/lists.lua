-- wrk script for the simulator throughput benchmark (docs/benchmarks.md).
-- Rotates over every list path of every project, read from the file named by
-- the PATHS environment variable (one path after /v1 per line, made by paths.sh).
local paths = {}
local counter = 0

function init(args)
  local file = os.getenv("PATHS") or "sim-bench-paths.txt"
  for line in io.lines(file) do
    if #line > 0 then
      paths[#paths + 1] = "/v1" .. line
    end
  end
  -- Each thread starts at a different place so the threads do not move in lockstep.
  counter = math.random(#paths)
end

function request()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter], { ["Authorization"] = "Bearer sk-admin-bench" })
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end
