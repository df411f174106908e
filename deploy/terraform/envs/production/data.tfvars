region                   = "eu-west-1"
name                     = "magento-production"
state_bucket             = "magento-production-terraform-state"
aurora_min_acu           = 2
aurora_max_acu           = 32
aurora_instances         = 2
redis_sessions_node_type = "cache.r7g.large"
redis_cache_node_type    = "cache.r7g.xlarge"
tags = {
  environment = "production"
  managed-by  = "terraform"
}
