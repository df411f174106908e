region       = "eu-west-1"
name         = "magento-production"
state_bucket = "magento-production-terraform-state"
# 3 ACU: max_connections 384 holds 30 frontend pods x 10 workers + the back office
# (scripts/check-deploy: aurora connection budget); 2 ACU (256) did not.
aurora_min_acu           = 3
aurora_max_acu           = 32
aurora_instances         = 2
redis_sessions_node_type = "cache.r7g.large"
redis_cache_node_type    = "cache.r7g.xlarge"
tags = {
  environment = "production"
  managed-by  = "terraform"
}
