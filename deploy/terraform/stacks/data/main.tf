variable "region" {
  description = "AWS region."
  type        = string
}

variable "name" {
  description = "Name prefix, e.g. `magento-production`."
  type        = string
}

variable "state_bucket" {
  description = "S3 bucket of the Terraform states (the network stack's state is read from it)."
  type        = string
}

variable "aurora_min_acu" {
  description = "Aurora minimum ACU."
  type        = number
}

variable "aurora_max_acu" {
  description = "Aurora maximum ACU."
  type        = number
}

variable "aurora_instances" {
  description = "Aurora instances (writer + readers)."
  type        = number
}

variable "redis_sessions_node_type" {
  description = "Node type of the sessions Redis."
  type        = string
}

variable "redis_cache_node_type" {
  description = "Node type of the cache Redis."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

# The network stack's outputs: its own state, read-only here.
data "terraform_remote_state" "network" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "network/terraform.tfstate"
    region = var.region
  }
}

module "data" {
  source = "../../modules/data"

  name                     = var.name
  vpc_id                   = data.terraform_remote_state.network.outputs.vpc_id
  data_subnet_ids          = data.terraform_remote_state.network.outputs.data_subnet_ids
  aurora_security_group_id = data.terraform_remote_state.network.outputs.aurora_security_group_id
  redis_security_group_id  = data.terraform_remote_state.network.outputs.redis_security_group_id
  aurora_min_acu           = var.aurora_min_acu
  aurora_max_acu           = var.aurora_max_acu
  aurora_instances         = var.aurora_instances
  redis_sessions_node_type = var.redis_sessions_node_type
  redis_cache_node_type    = var.redis_cache_node_type
  tags                     = var.tags
}

output "aurora_endpoint" {
  description = "Aurora writer endpoint."
  value       = module.data.aurora_endpoint
}

output "aurora_reader_endpoint" {
  description = "Aurora reader endpoint."
  value       = module.data.aurora_reader_endpoint
}

output "aurora_max_connections" {
  description = "max_connections at the minimum ACU."
  value       = module.data.aurora_max_connections
}

output "redis_endpoints" {
  description = "Redis primary endpoints (sessions, cache)."
  value       = module.data.redis_endpoints
}

output "media_bucket" {
  description = "Media bucket."
  value       = module.data.media_bucket
}

output "media_policy_arn" {
  description = "IAM policy for media access."
  value       = module.data.media_policy_arn
}

output "kms_key_arn" {
  description = "KMS key of the data tier and its secrets."
  value       = module.data.kms_key_arn
}

output "aurora_master_secret_arn" {
  description = "The RDS-managed master secret (rds!cluster-…): set it in the overlays' magento-db-master ExternalSecret."
  value       = module.data.aurora_master_secret_arn
}

output "db_app_secret_arn" {
  description = "Secret of Magento's own database user."
  value       = module.data.db_app_secret_arn
}

# Read by the cdn stack: CloudFront's log bucket and the media bucket (its S3 origin).
output "logs_bucket_domain_name" {
  description = "Log bucket (CloudFront standard logs, media access logs)."
  value       = module.data.logs_bucket_domain_name
}

output "media_bucket_arn" {
  description = "The media bucket (its policy admits the CDN's origin access control)."
  value       = module.data.media_bucket_arn
}

output "media_bucket_regional_domain_name" {
  description = "The media bucket's regional name (the CDN's S3 origin)."
  value       = module.data.media_bucket_regional_domain_name
}
