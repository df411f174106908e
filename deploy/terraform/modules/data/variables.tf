variable "name" {
  description = "Name prefix, e.g. `magento-production`."
  type        = string
}

variable "vpc_id" {
  description = "VPC (network stack)."
  type        = string
}

variable "data_subnet_ids" {
  description = "Data subnets (network stack): no internet route."
  type        = list(string)
}

variable "aurora_security_group_id" {
  description = "Security group of Aurora (network stack)."
  type        = string
}

variable "redis_security_group_id" {
  description = "Security group of ElastiCache (network stack)."
  type        = string
}

################################################################################
# Aurora MySQL Serverless v2
################################################################################

variable "aurora_engine_version" {
  description = "Aurora MySQL 3 (MySQL 8.0) version."
  type        = string
  default     = "8.0.mysql_aurora.3.08.0"
}

variable "aurora_min_acu" {
  description = "Minimum capacity (ACU, 2 GiB each). max_connections is sized to hold at this size."
  type        = number

  validation {
    condition     = var.aurora_min_acu >= 0.5
    error_message = "Aurora Serverless v2 takes at least 0.5 ACU."
  }
}

variable "aurora_max_acu" {
  description = "Maximum capacity (ACU)."
  type        = number
}

variable "aurora_instances" {
  description = "Instances: the writer and readers (readers in other zones for failover and magestack dbproxy's read split)."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Automated backup retention."
  type        = number
  default     = 14
}

################################################################################
# ElastiCache
################################################################################

variable "redis_engine_version" {
  description = "Redis OSS version."
  type        = string
  default     = "7.1"
}

variable "redis_sessions_node_type" {
  description = "Node type of the sessions group (no eviction: size it for every live session)."
  type        = string
}

variable "redis_cache_node_type" {
  description = "Node type of the cache group (Magento's cache, the edges' purge bus and L2 pages; evicts LRU)."
  type        = string
}

variable "redis_auth_token_version" {
  description = "Raise to push the current magento/redis-* secret to its group as the AUTH token (auth_token_wo; ROTATE keeps the old one valid)."
  type        = number
  default     = 1
}

variable "redis_replicas" {
  description = "Replicas per group (Multi-AZ failover needs at least one)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 1
    error_message = "At least one replica: a Redis node loss must fail over, not log every shopper out."
  }
}

variable "db_app_rotation_lambda_arn" {
  description = "Lambda of Secrets Manager's RDS MySQL alternating-users rotation (from the Serverless Application Repository) for magento/db-app; null: no automatic rotation."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
