output "vpc_id" {
  description = "The VPC."
  value       = try(aws_vpc.this.id, null)
}

output "private_subnet_ids" {
  description = "Subnets for nodes and pods."
  value       = try(aws_subnet.private[*].id, null)
}

output "public_subnet_ids" {
  description = "Subnets for internet-facing load balancers."
  value       = try(aws_subnet.public[*].id, null)
}

output "data_subnet_ids" {
  description = "Subnets for Aurora and ElastiCache (no internet route)."
  value       = try(aws_subnet.data[*].id, null)
}

output "nodes_security_group_id" {
  description = "Security group of the EKS nodes."
  value       = try(aws_security_group.nodes.id, null)
}

output "aurora_security_group_id" {
  description = "Security group of Aurora."
  value       = try(aws_security_group.aurora.id, null)
}

output "redis_security_group_id" {
  description = "Security group of ElastiCache."
  value       = try(aws_security_group.redis.id, null)
}

output "alb_origin_security_group_id" {
  description = "Security group of the storefront ALB (CloudFront's origin-facing prefix list only; Name tag `<name>-alb-origin`)."
  value       = try(aws_security_group.alb_origin.id, null)
}
