variable "region" {
  description = "AWS region."
  type        = string
}

variable "name" {
  description = "Name prefix, e.g. `magento-production`."
  type        = string
}

variable "cidr" {
  description = "VPC CIDR block."
  type        = string
}

variable "azs" {
  description = "Availability zones."
  type        = list(string)
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (staging)."
  type        = bool
}

variable "cluster_name" {
  description = "EKS cluster name (subnet discovery tags)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

module "network" {
  source = "../../modules/network"

  name               = var.name
  cidr               = var.cidr
  azs                = var.azs
  single_nat_gateway = var.single_nat_gateway
  cluster_name       = var.cluster_name
  tags               = var.tags
}

# Read by the data and compute stacks through terraform_remote_state.
output "vpc_id" {
  description = "The VPC."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Subnets for nodes and pods."
  value       = module.network.private_subnet_ids
}

output "public_subnet_ids" {
  description = "Subnets for public load balancers."
  value       = module.network.public_subnet_ids
}

output "data_subnet_ids" {
  description = "Subnets for Aurora and ElastiCache."
  value       = module.network.data_subnet_ids
}

output "nodes_security_group_id" {
  description = "Security group of the EKS nodes."
  value       = module.network.nodes_security_group_id
}

output "aurora_security_group_id" {
  description = "Security group of Aurora."
  value       = module.network.aurora_security_group_id
}

output "redis_security_group_id" {
  description = "Security group of ElastiCache."
  value       = module.network.redis_security_group_id
}

output "alb_origin_security_group_id" {
  description = "Security group of the storefront ALB (named in the frontend Ingress by its Name tag)."
  value       = module.network.alb_origin_security_group_id
}
