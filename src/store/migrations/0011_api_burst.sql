-- 0011: the burst allowance each API's rate limit was found to have (how many requests its
-- bucket let through beyond the steady rate before the first 429), so that the next crawl
-- steps above the remembered rate only a little until that much has been spent. NULL while
-- no crawl has run the bucket dry.
ALTER TABLE api_rate_limit ADD COLUMN burst INTEGER CHECK (burst IS NULL OR burst > 0);
